/* mkstructured: writes a safetensors file of synthetic weights with the
 * structure that real FP8 checkpoints trained in FP8 (DeepSeek-V3/R1)
 * have and small real models lack, for measuring exponent models
 * (make bench).  A benchmark input, never committed: make bench writes it
 * at run time.
 *
 * Usage: mkstructured [-s SEED] [-l LAYERS] [-t f8|bf16] [-r SR] [-c SC]
 *                     [-S SHRINK] [-B BOUNDFILE] > FILE
 *
 * Every layer holds four 2-D weights, shaped as the projections of a
 * transformer block (rows = output channels, a row = one output's
 * weights over the inputs):
 *     q_proj    1024 x 1024
 *     o_proj    1024 x 1000   (the last column block is partial)
 *     up_proj   2816 x 1024
 *     down_proj 1024 x 2816
 * An element is w[i][j] = r[i] * c[j] * z, where
 *   - z is standard normal (Box-Muller over a xorshift64* generator),
 *   - log2 r[i] is normal with deviation SR (-r, default 0.5: row scales
 *     spread log-normally),
 *   - log2 c[j] is normal with deviation SC (-c, default 0.5), and 1
 *     column in 64 is an outlier channel, 8 times larger (log2 c[j] + 3),
 * all drawn in order from one generator seeded with SEED (default 1).
 * With -t f8 (the default) each weight is stored as DeepSeek-V3 stores
 * it: F8_E4M3 values in 128 x 128 blocks, each block divided by its own
 * scale s = max |w| / 448 and rounded to nearest even, and the scales as
 * the F32 tensor NAME_scale_inv of shape ceil(rows/128) x ceil(cols/128)
 * (dequantized = value * scale_inv).  With -t bf16 the weights are
 * BF16, rounded to nearest even, without scales.  -S divides every
 * dimension by SHRINK (rounding up), for small test sets.
 *
 * -B writes to BOUNDFILE one line, "EXPONENTS BITS": the generator's
 * bound, the code length of the weights' exponents for a coder told
 * each element's exact scale (0.02 r[i] c[j], over the block's scale s
 * for F8): the sum of -log2 P(exponent | scale) under the normal law of
 * z, the interval of |z| that rounds to each exponent taken with its
 * rounding edges.  Given the scales the elements are independent, so no
 * model that sees only the exponents before a symbol can code them
 * shorter on average (to within the one maximum of each F8 block, which
 * the block's scale tells): a floor, where H0 and the row oracle are
 * only yardsticks.
 *
 * The same SEED gives the same bytes wherever libm's log, sqrt and cos
 * give the same doubles (glibc does on every x86-64). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static uint64_t rng_state;
static double SR = 0.5, SC = 0.5;
static double bound_bits;		/* -B: the generator's bound */
static uint64_t bound_n;

static uint64_t next64(void)
{
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return rng_state * 0x2545F4914F6CDD1Du;
}

/* Uniform in (0, 1). */
static double uniform(void)
{
	return ((double)(next64() >> 11) + 0.5) / 9007199254740992.0;
}

static double normal(void)
{
	return sqrt(-2.0 * log(uniform())) * cos(6.283185307179586 * uniform());
}

/* F8_E4M3 (the FN variant: bias 7, no infinities, max 448) nearest to
 * v, ties to even; |v| <= 448. */
static uint8_t to_e4m3(double v)
{
	uint8_t sign = v < 0 ? 0x80 : 0;
	double a = fabs(v), m;
	int e;

	if (a < ldexp(1.0, -6)) {
		m = rint(ldexp(a, 9));		/* subnormal: m * 2^-9 */
		if (m < 8)
			return sign | (uint8_t)m;
		return sign | 0x08;		/* rounded up to 2^-6 */
	}
	e = ilogb(a);
	m = rint(ldexp(a, 3 - e)) - 8;	/* 8 + m = a / 2^(e-3) */
	if (m == 8) {
		m = 0;
		e++;
	}
	return sign | (uint8_t)((e + 7) << 3) | (uint8_t)m;
}

/* BF16 nearest to the float v, ties to even (v finite). */
static uint16_t to_bf16(float v)
{
	uint32_t x;

	memcpy(&x, &v, 4);
	x += 0x7fff + ((x >> 16) & 1);
	return (uint16_t)(x >> 16);
}

/* P(|sigma z| in [lo, hi)) for z standard normal. */
static double band(double sigma, double lo, double hi)
{
	double k = 1 / (sigma * sqrt(2.0));

	return erfc(lo * k) - (isinf(hi) ? 0 : erfc(hi * k));
}

/* The probability that sigma z stored as E4M3 has exponent field f: the
 * values that round to the field's binade, ties as to_e4m3 breaks them. */
static double p_e4m3(double sigma, unsigned f)
{
	double sub = ldexp(1.0, -6) - ldexp(1.0, -10);
	int k = (int)f - 7;

	if (f == 0)
		return band(sigma, 0, sub);
	return band(sigma, f == 1 ? sub : ldexp(1.0, k) - ldexp(1.0, k - 5),
		    f == 15 ? INFINITY : ldexp(1.0, k + 1) - ldexp(1.0, k - 4));
}

/* The same for BF16's exponent field (7 mantissa bits). */
static double p_bf16(double sigma, unsigned f)
{
	int k = (int)f - 127;

	if (f == 0)
		return band(sigma, 0, ldexp(1.0, -126));
	return band(sigma, ldexp(1.0, k) - ldexp(1.0, k - 9),
		    ldexp(1.0, k + 1) - ldexp(1.0, k - 8));
}

static void bound_add(double p)
{
	bound_bits -= log2(p > 1e-300 ? p : 1e-300);
	bound_n++;
}

struct tensor {
	char name[128];
	const char *dtype;
	uint64_t rows, cols, esize;
	uint8_t *data;
};

static void die(const char *what)
{
	fprintf(stderr, "mkstructured: %s\n", what);
	exit(111);
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n);

	if (!p)
		die("out of memory");
	return p;
}

/* Draws one weight and stores it (and its scales) in t (and ts). */
static void make_weight(uint64_t rows, uint64_t cols, int f8,
			struct tensor *t, struct tensor *ts)
{
	double *w = xmalloc(rows * cols * sizeof *w);
	double *r = xmalloc(rows * sizeof *r), *c = xmalloc(cols * sizeof *c);
	uint64_t i, j, bi, bj, br = (rows + 127) / 128, bc = (cols + 127) / 128;

	for (i = 0; i < rows; i++)
		r[i] = exp2(SR * normal());
	for (j = 0; j < cols; j++)
		c[j] = exp2(SC * normal() + (next64() % 64 == 0 ? 3 : 0));
	for (i = 0; i < rows; i++)
		for (j = 0; j < cols; j++)
			w[i * cols + j] = 0.02 * r[i] * c[j] * normal();
	t->rows = rows;
	t->cols = cols;
	if (!f8) {
		t->dtype = "BF16";
		t->esize = 2;
		t->data = xmalloc(rows * cols * 2);
		for (i = 0; i < rows * cols; i++) {
			uint16_t b = to_bf16((float)w[i]);

			t->data[2 * i] = (uint8_t)b;
			t->data[2 * i + 1] = (uint8_t)(b >> 8);
			bound_add(p_bf16(0.02 * r[i / cols] * c[i % cols],
					 (b >> 7) & 0xff));
		}
		goto out;
	}
	t->dtype = "F8_E4M3";
	t->esize = 1;
	t->data = xmalloc(rows * cols);
	ts->dtype = "F32";
	ts->esize = 4;
	ts->rows = br;
	ts->cols = bc;
	ts->data = xmalloc(br * bc * 4);
	for (bi = 0; bi < br; bi++)
		for (bj = 0; bj < bc; bj++) {
			double mx = 0;
			float s;
			uint32_t sb;

			for (i = bi * 128; i < rows && i < bi * 128 + 128; i++)
				for (j = bj * 128; j < cols && j < bj * 128 + 128; j++)
					mx = fmax(mx, fabs(w[i * cols + j]));
			s = (float)(mx / 448.0);
			if (s == 0)
				s = 1;
			memcpy(&sb, &s, 4);
			for (int k = 0; k < 4; k++)
				ts->data[4 * (bi * bc + bj) + k] =
					(uint8_t)(sb >> (8 * k));
			for (i = bi * 128; i < rows && i < bi * 128 + 128; i++)
				for (j = bj * 128; j < cols && j < bj * 128 + 128; j++) {
					double v = w[i * cols + j] / s;

					uint8_t e = to_e4m3(fmax(-448, fmin(448, v)));

					t->data[i * cols + j] = e;
					bound_add(p_e4m3(0.02 * r[i] * c[j] / s,
							 (e >> 3) & 15));
				}
		}
out:
	free(w);
	free(r);
	free(c);
}

static void put(const void *p, size_t n)
{
	if (fwrite(p, 1, n, stdout) != n)
		die("write error");
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		uint64_t rows, cols;
	} kinds[] = {
		{ "self_attn.q_proj", 1024, 1024 },
		{ "self_attn.o_proj", 1024, 1000 },
		{ "mlp.up_proj", 2816, 1024 },
		{ "mlp.down_proj", 1024, 2816 },
	};
	struct tensor *t;
	size_t nt = 0, hlen = 0, cap;
	char *hdr;
	uint64_t off = 0, seed = 1;
	int layers = 2, f8 = 1, opt;
	uint64_t shrink = 1;
	const char *bound = NULL;

	while ((opt = getopt(argc, argv, "s:l:t:r:c:S:B:")) != -1) {
		switch (opt) {
		case 's': seed = strtoull(optarg, NULL, 10); break;
		case 'l': layers = atoi(optarg); break;
		case 't': f8 = strcmp(optarg, "bf16") != 0; break;
		case 'r': SR = atof(optarg); break;
		case 'c': SC = atof(optarg); break;
		case 'S': shrink = strtoull(optarg, NULL, 10); break;
		case 'B': bound = optarg; break;
		default:
			fprintf(stderr, "usage: mkstructured [-s SEED] [-l LAYERS] "
				"[-t f8|bf16] [-r SR] [-c SC] [-S SHRINK] "
				"[-B BOUNDFILE]\n");
			return 100;
		}
	}
	if (layers < 1 || layers > 64)
		die("-l: 1 to 64 layers");
	if (shrink < 1 || shrink > 1000)
		die("-S: 1 to 1000");
	rng_state = seed * 0x9E3779B97F4A7C15u + 1;
	t = xmalloc(sizeof *t * 8 * (size_t)layers);
	for (int l = 0; l < layers; l++)
		for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
			struct tensor *w = &t[nt++], *s = &t[nt];

			char base[80];

			snprintf(base, sizeof base, "model.layers.%d.%s.weight",
				 l, kinds[k].name);
			snprintf(w->name, sizeof w->name, "%s", base);
			snprintf(s->name, sizeof s->name, "%s_scale_inv", base);
			make_weight((kinds[k].rows + shrink - 1) / shrink,
				    (kinds[k].cols + shrink - 1) / shrink, f8, w,
				    s);
			if (f8)
				nt++;
		}
	cap = 256 + 256 * nt;
	hdr = xmalloc(cap);
	hlen += (size_t)snprintf(hdr, cap, "{\"__metadata__\":{\"format\":\"pt\"}");
	for (size_t i = 0; i < nt; i++) {
		uint64_t n = t[i].rows * t[i].cols * t[i].esize;

		hlen += (size_t)snprintf(hdr + hlen, cap - hlen,
			",\"%s\":{\"dtype\":\"%s\",\"shape\":[%llu,%llu],"
			"\"data_offsets\":[%llu,%llu]}", t[i].name, t[i].dtype,
			(unsigned long long)t[i].rows,
			(unsigned long long)t[i].cols,
			(unsigned long long)off, (unsigned long long)(off + n));
		off += n;
	}
	hdr[hlen++] = '}';
	while (hlen % 8)
		hdr[hlen++] = ' ';
	for (int k = 0; k < 8; k++) {
		uint8_t b = (uint8_t)((uint64_t)hlen >> (8 * k));
		put(&b, 1);
	}
	put(hdr, hlen);
	for (size_t i = 0; i < nt; i++) {
		put(t[i].data, t[i].rows * t[i].cols * t[i].esize);
		free(t[i].data);
	}
	free(t);
	free(hdr);
	if (fflush(stdout) || fclose(stdout))
		die("write error");
	if (bound) {
		FILE *b = fopen(bound, "w");

		if (!b || fprintf(b, "%llu %.1f\n", (unsigned long long)bound_n,
				  bound_bits) < 0 || fclose(b))
			die("cannot write the bound file");
	}
	return 0;
}
