/* Unit test of the plane splitting and merging of lib/planes: for every
 * dtype and many counts (every count 0..70, then counts around and past
 * the variants' steps), every variant's split gives the scalar
 * reference's planes byte for byte and every variant's merge gives the
 * values back; every variant refuses each kind of out-of-range symbol and
 * a nonzero padding nibble, wherever it sits; and STP_IMPL picks or holds
 * back a variant as stp_planes_force_impl says.  Prints TAP; exits 1 if
 * any test failed.  Every buffer is a heap block ending exactly where its
 * data ends (and starting at varying alignments), so a run under valgrind
 * or -fsanitize=address catches any read or write past it. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../lib/error.h"
#include "../../lib/planes.h"

#define NVAR 3
static const char *const variants[NVAR] = { "scalar", "avx2", "avx512" };
static int have[NVAR];

static const struct {
	unsigned code;
	const char *name;
} dtypes[] = {
	{ STP_BF16, "BF16" }, { STP_F16, "F16" }, { STP_F32, "F32" },
	{ STP_F64, "F64" }, { STP_E4M3, "F8_E4M3" }, { STP_E5M2, "F8_E5M2" },
};
#define NDTYPES (sizeof dtypes / sizeof dtypes[0])

static int ntest, nfail;

static void ok(int cond, const char *fmt, ...)
{
	va_list ap;

	ntest++;
	if (!cond)
		nfail++;
	printf("%sok %d - ", cond ? "" : "not ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
}

static void skip(const char *fmt, ...)
{
	va_list ap;

	ntest++;
	printf("ok %d - ", ntest);
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf(" # SKIP not supported by this CPU\n");
}

static void force(int v)
{
	if (stp_planes_force_impl(variants[v]) < 0) {
		printf("Bail out! cannot force %s\n", variants[v]);
		exit(1);
	}
}

static uint64_t rng = 0x243F6A8885A308D3u;

static uint8_t random_byte(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint8_t)(rng >> 29);
}

/* A heap block of n bytes that starts at offset skew of its allocation
 * and ends exactly at the allocation's end. */
struct block {
	uint8_t *base, *p;
};

static struct block alloc_block(size_t n, unsigned skew)
{
	struct block b;

	b.base = malloc(n + skew ? n + skew : 1);
	if (!b.base) {
		printf("Bail out! out of memory\n");
		exit(1);
	}
	b.p = b.base + skew;
	memset(b.base, 0xA5, n + skew);
	return b;
}

/* A frame's values and planes, each plane in its own block. */
struct frame {
	unsigned code, nplanes;
	uint32_t count;
	size_t bytes, len[STP_MAX_PLANES];
	struct block data, plane[STP_MAX_PLANES];
	uint8_t *p[STP_MAX_PLANES];
};

static void frame_alloc(struct frame *f, unsigned code, uint32_t count)
{
	f->code = code;
	f->count = count;
	f->nplanes = stp_float_nplanes(code);
	f->bytes = (size_t)count * stp_float_width(code);
	f->data = alloc_block(f->bytes, count % 5);
	for (unsigned i = 0; i < f->nplanes; i++) {
		f->len[i] = stp_plane_len(code, i, count);
		f->plane[i] = alloc_block(f->len[i], (count + i) % 3);
		f->p[i] = f->plane[i].p;
	}
}

static void frame_free(struct frame *f)
{
	free(f->data.base);
	for (unsigned i = 0; i < f->nplanes; i++)
		free(f->plane[i].base);
}

static int merge(struct frame *f, uint8_t *out)
{
	return stp_planes_merge(f->code, (const uint8_t *const *)f->p,
				f->count, out);
}

/* Random values split by the reference, then by variant v; then merged
 * by v.  Returns a description of the first difference, or NULL. */
static const char *roundtrip(int v, unsigned code, uint32_t count)
{
	struct frame ref, f;
	struct block out;
	const char *why = NULL;
	int rc;

	frame_alloc(&ref, code, count);
	frame_alloc(&f, code, count);
	out = alloc_block(ref.bytes, (count + 1) % 4);
	for (size_t i = 0; i < ref.bytes; i++)
		ref.data.p[i] = random_byte();
	memcpy(f.data.p, ref.data.p, ref.bytes);
	force(0);
	if (stp_planes_split(code, ref.data.p, count, ref.p) < 0)
		why = "reference split failed";
	force(v);
	if (!why && stp_planes_split(code, f.data.p, count, f.p) < 0)
		why = "split failed";
	for (unsigned i = 0; !why && i < ref.nplanes; i++)
		if (memcmp(ref.p[i], f.p[i], ref.len[i]))
			why = "split differs from the reference";
	if (!why && (rc = merge(&f, out.p)) != 0)
		why = rc == STP_EFRAME ? "merge refused valid planes"
				       : "merge failed";
	if (!why && memcmp(out.p, ref.data.p, ref.bytes))
		why = "merge does not give the values back";
	frame_free(&ref);
	frame_free(&f);
	free(out.base);
	return why;
}

static void test_roundtrips(void)
{
	static const uint32_t big[] = {
		95, 96, 97, 127, 128, 129, 191, 192, 193, 255, 256, 257,
		1000, 1023, 4096 + 17, 65536 + 3, 100001, 524288,
	};
	enum { NCOUNTS = 71 + sizeof big / sizeof big[0] };

	for (size_t d = 0; d < NDTYPES; d++)
		for (int v = 0; v < NVAR; v++) {
			const char *why = NULL;
			uint32_t count = 0;

			if (!have[v]) {
				skip("%s %s: split equals the reference, "
				     "merge round-trips", dtypes[d].name,
				     variants[v]);
				continue;
			}
			for (size_t k = 0; !why && k < NCOUNTS; k++) {
				count = k < 71 ? (uint32_t)k : big[k - 71];
				why = roundtrip(v, dtypes[d].code, count);
			}
			if (why)
				printf("# %s %s, count %u: %s\n",
				       dtypes[d].name, variants[v], count, why);
			ok(!why, "%s %s: split equals the reference and merge "
			   "round-trips, %d counts", dtypes[d].name,
			   variants[v], (int)NCOUNTS);
		}
}

/* A symbol out of range: plane, what to OR into the byte for the value
 * at index (for a nibble plane, into the value's nibble). */
static const struct fault {
	unsigned code, plane;
	uint8_t bits;
	const char *what;
} faults[] = {
	{ STP_F16, 0, 0x20, "exponent 32" },
	{ STP_F16, 0, 0x80, "exponent 128" },
	{ STP_F16, 2, 0x08, "sign/mantissa byte 8" },
	{ STP_F16, 2, 0x40, "sign/mantissa byte 64" },
	{ STP_E4M3, 0, 0x10, "exponent 16" },
	{ STP_E4M3, 0, 0x80, "exponent 128" },
	{ STP_E5M2, 0, 0x20, "exponent 32" },
	{ STP_E5M2, 0, 0x40, "exponent 64" },
	{ STP_E5M2, 1, 0x08, "nibble 8" },
};
#define NFAULTS (sizeof faults / sizeof faults[0])

/* Valid planes of count values with one symbol spoiled at index, then
 * merged by variant v.  Returns the merge's code. */
static int spoil(int v, const struct fault *fl, uint32_t count,
		 uint32_t index)
{
	struct frame f;
	struct block out;
	int rc;

	frame_alloc(&f, fl->code, count);
	out = alloc_block(f.bytes, 0);
	for (size_t i = 0; i < f.bytes; i++)
		f.data.p[i] = random_byte();
	force(0);
	stp_planes_split(fl->code, f.data.p, count, f.p);
	if (fl->plane == 1 && (fl->code == STP_E4M3 || fl->code == STP_E5M2))
		f.p[1][index / 2] |= (uint8_t)(fl->bits << 4 * (index & 1));
	else
		f.p[fl->plane][index] |= fl->bits;
	force(v);
	rc = merge(&f, out.p);
	frame_free(&f);
	free(out.base);
	return rc;
}

/* Counts and positions: alone, in the first and last step of each
 * variant's body, and in the scalar tail after it. */
static const uint32_t where[][2] = {
	{ 1, 0 }, { 2, 1 }, { 3, 2 }, { 64, 0 }, { 64, 63 }, { 300, 0 },
	{ 300, 31 }, { 300, 32 }, { 300, 63 }, { 300, 64 }, { 300, 127 },
	{ 300, 128 }, { 300, 200 }, { 300, 255 }, { 300, 256 },
	{ 300, 299 }, { 4099, 4000 }, { 4099, 4098 },
};
#define NWHERE (sizeof where / sizeof where[0])

static void test_faults(void)
{
	for (size_t k = 0; k < NFAULTS; k++)
		for (int v = 0; v < NVAR; v++) {
			const struct fault *fl = &faults[k];
			const char *name = dtypes[fl->code - 1].name;
			size_t w;
			int rc = STP_EFRAME;

			if (!have[v]) {
				skip("%s %s: %s refused", name, variants[v],
				     fl->what);
				continue;
			}
			for (w = 0; w < NWHERE && rc == STP_EFRAME; w++)
				rc = spoil(v, fl, where[w][0], where[w][1]);
			if (rc != STP_EFRAME)
				printf("# count %u, index %u: got %d\n",
				       where[w - 1][0], where[w - 1][1], rc);
			ok(rc == STP_EFRAME, "%s %s: %s refused at %d places",
			   name, variants[v], fl->what, (int)NWHERE);
		}
}

/* The high nibble after an odd count of FP8 values must be 0. */
static void test_padding(void)
{
	static const uint32_t counts[] = { 1, 3, 63, 65, 127, 129, 255, 257,
					   4097 };

	for (unsigned code = STP_E4M3; code <= STP_E5M2; code++)
		for (int v = 0; v < NVAR; v++) {
			const char *name = dtypes[code - 1].name;
			size_t k;
			int rc = STP_EFRAME;

			if (!have[v]) {
				skip("%s %s: padding nibble refused", name,
				     variants[v]);
				continue;
			}
			for (k = 0; k < 9 && rc == STP_EFRAME; k++) {
				struct frame f;
				struct block out;

				frame_alloc(&f, code, counts[k]);
				out = alloc_block(f.bytes, 0);
				memset(f.data.p, 0x35, f.bytes);
				force(0);
				stp_planes_split(code, f.data.p, counts[k],
						 f.p);
				f.p[1][counts[k] / 2] |= 0x10;
				force(v);
				rc = merge(&f, out.p);
				frame_free(&f);
				free(out.base);
			}
			ok(rc == STP_EFRAME,
			   "%s %s: a nonzero padding nibble is refused "
			   "(%zu counts)", name, variants[v], k);
		}
}

/* The largest symbols in range pass, in every position of a step. */
static void test_extremes(void)
{
	for (int v = 0; v < NVAR; v++) {
		const char *what = NULL;

		if (!have[v]) {
			skip("%s: the largest valid symbols pass",
			     variants[v]);
			continue;
		}
		for (unsigned code = STP_BF16; code <= STP_E5M2; code++) {
			struct frame f;
			struct block out;

			frame_alloc(&f, code, 301);
			out = alloc_block(f.bytes, 0);
			memset(f.data.p, 0xFF, f.bytes);
			force(0);
			stp_planes_split(code, f.data.p, 301, f.p);
			force(v);
			if (merge(&f, out.p) != 0 ||
			    memcmp(out.p, f.data.p, f.bytes))
				what = dtypes[code - 1].name;
			frame_free(&f);
			free(out.base);
		}
		ok(!what, "%s: the largest valid symbols pass%s%s",
		   variants[v], what ? ", not for " : "", what ? what : "");
	}
}

static void test_misc(void)
{
	uint8_t byte = 0, *plane[STP_MAX_PLANES] = { &byte, &byte };
	int v;

	ok(stp_planes_force_impl("sse9") == STP_EUNSUPPORTED,
	   "forcing an unknown variant fails");
	for (v = 0; v < NVAR; v++) {
		int rc = stp_planes_force_impl(variants[v]);

		if (have[v])
			ok(rc == 0 &&
			   !strcmp(stp_planes_impl_name(), variants[v]),
			   "forcing %s makes it current", variants[v]);
		else
			ok(rc == STP_EUNSUPPORTED &&
			   strcmp(stp_planes_impl_name(), variants[v]),
			   "forcing %s, which this CPU lacks, fails",
			   variants[v]);
	}
	ok(stp_planes_force_impl(NULL) == 0 &&
	   !strcmp(stp_planes_impl_name(), variants[have[2] ? 2 : have[1]]),
	   "auto picks the best variant (%s)", stp_planes_impl_name());
	ok(stp_planes_force_impl("cuda") == 0 &&
	   !strcmp(stp_planes_impl_name(), variants[have[2] ? 2 : have[1]]),
	   "cuda picks the best CPU variant (%s)", stp_planes_impl_name());
	ok(stp_planes_split(7, &byte, 1, plane) == STP_EFRAME &&
	   stp_planes_merge(7, (const uint8_t *const *)plane, 1, &byte) ==
		   STP_EFRAME &&
	   stp_planes_merge(0, (const uint8_t *const *)plane, 1, &byte) ==
		   STP_EFRAME,
	   "an unknown dtype code is refused");
}

/* The variant STP_IMPL selected at start-up, and what a split and a merge
 * then return: printed by a child run with --impl, for test_env. */
static int report_impl(void)
{
	uint8_t v[2] = { 0x80, 0x3F }, e = 0, sm = 0;
	uint8_t *plane[2] = { &e, &sm };

	printf("%s %d %d\n", stp_planes_impl_name(),
	       stp_planes_split(STP_BF16, v, 1, plane),
	       stp_planes_merge(STP_BF16, (const uint8_t *const *)plane, 1,
				v));
	return 0;
}

static void test_env(void)
{
	static const char *const names[] = {
		"scalar", "avx2", "avx512", "", "auto", "cuda", "sse9"
	};
	const char *best = variants[have[2] ? 2 : have[1]];
	char self[4096], cmd[4200], got[64], want[64];
	ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
	size_t i;

	if (n <= 0) {
		ok(0, "STP_IMPL: cannot find this test's executable");
		return;
	}
	self[n] = 0;
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		FILE *f;

		snprintf(cmd, sizeof cmd, "STP_IMPL='%s' '%s' --impl",
			 names[i], self);
		if (i < NVAR && have[i])
			snprintf(want, sizeof want, "%s 0 0\n", names[i]);
		else if (i < NVAR || i == 6)
			snprintf(want, sizeof want, "none %d %d\n",
				 STP_EUNSUPPORTED, STP_EUNSUPPORTED);
		else
			snprintf(want, sizeof want, "%s 0 0\n", best);
		got[0] = 0;
		f = popen(cmd, "r");
		if (!f || !fgets(got, sizeof got, f))
			got[0] = 0;
		if (f)
			pclose(f);
		ok(!strcmp(got, want), "STP_IMPL='%s' at start-up: %.*s",
		   names[i], (int)strcspn(got, "\n"), got);
	}
}

int main(int argc, char **argv)
{
	int v;

	if (argc == 2 && !strcmp(argv[1], "--impl"))
		return report_impl();
	for (v = 0; v < NVAR; v++)
		have[v] = stp_planes_force_impl(variants[v]) == 0;
	test_misc();
	test_env();
	test_roundtrips();
	test_faults();
	test_padding();
	test_extremes();
	printf("1..%d\n", ntest);
	return nfail ? 1 : 0;
}
