/* Floats split into planes and merged back (formats/planes.md): the
 * headers, the scalar reference loops, and the dispatcher that hands the
 * bulk of a frame to the fastest variant and its tail to the reference. */
#include <string.h>

#include "error.h"
#include "impl.h"
#include "planes.h"
#include "stream.h"

static const struct {
	const char *name;
	unsigned width, nplanes, expbits;
} codes[] = {
	[STP_BF16] = { "BF16", 2, 2, 8 },
	[STP_F16] = { "F16", 2, 3, 5 },
	[STP_F32] = { "F32", 4, 4, 8 },
	[STP_F64] = { "F64", 8, 8, 8 },
	[STP_E4M3] = { "F8_E4M3", 1, 2, 4 },
	[STP_E5M2] = { "F8_E5M2", 1, 2, 5 },
};

#define NCODES (sizeof codes / sizeof codes[0])

unsigned stp_float_code(const char *dtype)
{
	for (unsigned c = 1; c < NCODES; c++)
		if (strcmp(dtype, codes[c].name) == 0)
			return c;
	return 0;
}

unsigned stp_float_width(unsigned code)
{
	return code > 0 && code < NCODES ? codes[code].width : 0;
}

unsigned stp_float_expbits(unsigned code)
{
	return code > 0 && code < NCODES ? codes[code].expbits : 0;
}

unsigned stp_float_nplanes(unsigned code)
{
	return code > 0 && code < NCODES ? codes[code].nplanes : 0;
}

static int is_nibbles(unsigned code, unsigned plane)
{
	return plane == 1 && (code == STP_E4M3 || code == STP_E5M2);
}

size_t stp_plane_len(unsigned code, unsigned plane, uint32_t count)
{
	return is_nibbles(code, plane) ? ((size_t)count + 1) / 2 : count;
}

void stp_planes_lengths(struct stp_planes_hdr *h)
{
	h->nplanes = stp_float_nplanes(h->dtype);
	for (unsigned i = 0; i < h->nplanes; i++)
		h->len[i] = (uint32_t)stp_plane_len(h->dtype, i, h->count);
}

size_t stp_planes_hdr_size(const struct stp_planes_hdr *h)
{
	return STP_PLANES_FIXED + 4 * (size_t)h->nplanes;
}

void stp_planes_hdr_build(const struct stp_planes_hdr *h, uint8_t *buf)
{
	stp_put64(buf, h->offset);
	stp_put32(buf + 8, h->count);
	buf[12] = (uint8_t)h->dtype;
	buf[13] = (uint8_t)h->nplanes;
	stp_put16(buf + 14, (uint16_t)h->layout);
	stp_put64(buf + 16, h->rowlen);
	stp_put64(buf + 24, h->column);
	for (unsigned i = 0; i < h->nplanes; i++)
		stp_put32(buf + STP_PLANES_FIXED + 4 * i, h->len[i]);
}

int stp_planes_hdr_parse(const uint8_t *p, size_t len,
			 struct stp_planes_hdr *out)
{
	size_t size;

	if (len < STP_PLANES_FIXED)
		return STP_EFRAME;
	out->offset = stp_get64(p);
	out->count = stp_get32(p + 8);
	out->dtype = p[12];
	out->nplanes = p[13];
	out->rowlen = stp_get64(p + 16);
	out->column = stp_get64(p + 24);
	out->layout = stp_get16(p + 14);
	if (out->count == 0 || stp_float_nplanes(out->dtype) == 0 ||
	    out->nplanes != stp_float_nplanes(out->dtype) ||
	    out->rowlen == 0 || out->column >= out->rowlen)
		return STP_EFRAME;
	size = stp_planes_hdr_size(out);
	if (len < size)
		return STP_EFRAME;
	for (unsigned i = 0; i < out->nplanes; i++)
		out->len[i] = stp_get32(p + STP_PLANES_FIXED + 4 * i);
	return (int)size;
}

/* ---- The scalar reference ---- */

/* The loops are written per dtype, one value (or pair of FP8 values) at a
 * time, as the layout table reads; planes_avx2.c and planes_avx512.c must
 * give the same bytes. */

static void split_bf16(const uint8_t *d, uint32_t n, uint8_t *e, uint8_t *sm)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t lo = d[2 * i], hi = d[2 * i + 1];
		e[i] = (uint8_t)(hi << 1 | lo >> 7);
		sm[i] = (uint8_t)((hi & 0x80) | (lo & 0x7F));
	}
}

static void merge_bf16(const uint8_t *e, const uint8_t *sm, uint32_t n,
		       uint8_t *d)
{
	for (uint32_t i = 0; i < n; i++) {
		d[2 * i] = (uint8_t)(e[i] << 7 | (sm[i] & 0x7F));
		d[2 * i + 1] = (uint8_t)((sm[i] & 0x80) | e[i] >> 1);
	}
}

static void split_f16(const uint8_t *d, uint32_t n, uint8_t *const p[])
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t lo = d[2 * i], hi = d[2 * i + 1];
		p[0][i] = (hi >> 2) & 0x1F;
		p[1][i] = lo;
		p[2][i] = (uint8_t)((hi >> 5 & 4) | (hi & 3));
	}
}

static int merge_f16(const uint8_t *const p[], uint32_t n, uint8_t *d)
{
	uint8_t bad = 0;

	for (uint32_t i = 0; i < n; i++) {
		bad |= (p[0][i] & 0xE0) | (p[2][i] & 0xF8);
		d[2 * i] = p[1][i];
		d[2 * i + 1] = (uint8_t)((p[2][i] & 4) << 5 | p[0][i] << 2 |
					 (p[2][i] & 3));
	}
	return bad ? STP_EFRAME : 0;
}

static void split_f32(const uint8_t *d, uint32_t n, uint8_t *const p[])
{
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *v = d + 4 * i;
		p[0][i] = (uint8_t)(v[3] << 1 | v[2] >> 7);
		p[1][i] = v[0];
		p[2][i] = v[1];
		p[3][i] = (uint8_t)((v[3] & 0x80) | (v[2] & 0x7F));
	}
}

static void merge_f32(const uint8_t *const p[], uint32_t n, uint8_t *d)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *v = d + 4 * i;
		v[0] = p[1][i];
		v[1] = p[2][i];
		v[2] = (uint8_t)(p[0][i] << 7 | (p[3][i] & 0x7F));
		v[3] = (uint8_t)((p[3][i] & 0x80) | p[0][i] >> 1);
	}
}

static void split_f64(const uint8_t *d, uint32_t n, uint8_t *const p[])
{
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *v = d + 8 * i;
		/* exponent bits 62..52: e[10:3] = bits 62..55 */
		p[0][i] = (uint8_t)(v[7] << 1 | v[6] >> 7);
		for (unsigned b = 0; b < 6; b++)
			p[1 + b][i] = v[b];
		p[7][i] = (uint8_t)((v[7] & 0x80) | ((v[6] >> 4) & 7) << 4 |
				    (v[6] & 0xF));
	}
}

static void merge_f64(const uint8_t *const p[], uint32_t n, uint8_t *d)
{
	for (uint32_t i = 0; i < n; i++) {
		uint8_t *v = d + 8 * i;
		for (unsigned b = 0; b < 6; b++)
			v[b] = p[1 + b][i];
		v[6] = (uint8_t)(p[0][i] << 7 | (p[7][i] & 0x70) |
				 (p[7][i] & 0xF));
		v[7] = (uint8_t)((p[7][i] & 0x80) | p[0][i] >> 1);
	}
}

/* FP8: ebits exponent bits above mbits mantissa bits. */
static void split_fp8(const uint8_t *d, uint32_t n, unsigned mbits,
		      uint8_t *e, uint8_t *nib)
{
	unsigned emask = (0x7Fu >> mbits);
	unsigned mmask = (1u << mbits) - 1;

	for (uint32_t i = 0; i + 1 < n; i += 2) {
		uint8_t a = d[i], b = d[i + 1];
		e[i] = (uint8_t)((a >> mbits) & emask);
		e[i + 1] = (uint8_t)((b >> mbits) & emask);
		nib[i / 2] = (uint8_t)(((a >> 7) << mbits | (a & mmask)) |
				       ((b >> 7) << mbits | (b & mmask)) << 4);
	}
	if (n & 1) {
		uint8_t a = d[n - 1];
		e[n - 1] = (uint8_t)((a >> mbits) & emask);
		nib[n / 2] = (uint8_t)((a >> 7) << mbits | (a & mmask));
	}
}

static int merge_fp8(const uint8_t *e, const uint8_t *nib, uint32_t n,
		     unsigned mbits, uint8_t *d)
{
	unsigned emask = (0x7Fu >> mbits);
	unsigned mmask = (1u << mbits) - 1;
	unsigned nmask = (2u << mbits) - 1;   /* sign and mantissa */
	uint8_t bad = 0;

	for (uint32_t i = 0; i < n; i++) {
		unsigned s = (nib[i / 2] >> (4 * (i & 1))) & 0xF;
		bad |= (uint8_t)((e[i] & ~emask) | (s & ~nmask));
		d[i] = (uint8_t)((s >> mbits) << 7 | e[i] << mbits |
				 (s & mmask));
	}
	if (n & 1)
		bad |= nib[n / 2] >> 4;
	return bad ? STP_EFRAME : 0;
}

/* Splits (merges) values from .. count-1 with the loops above, from being
 * even: the part a variant leaves. */
static void split_from(unsigned code, const uint8_t *data, uint32_t count,
		       uint8_t *const plane[], uint32_t from)
{
	uint8_t *p[STP_MAX_PLANES];
	uint32_t n = count - from;

	if (n == 0)
		return;
	for (unsigned i = 0; i < stp_float_nplanes(code); i++)
		p[i] = plane[i] + (is_nibbles(code, i) ? from / 2 : from);
	data += (size_t)from * stp_float_width(code);
	switch (code) {
	case STP_BF16: split_bf16(data, n, p[0], p[1]); break;
	case STP_F16: split_f16(data, n, p); break;
	case STP_F32: split_f32(data, n, p); break;
	case STP_F64: split_f64(data, n, p); break;
	case STP_E4M3: split_fp8(data, n, 3, p[0], p[1]); break;
	case STP_E5M2: split_fp8(data, n, 2, p[0], p[1]); break;
	}
}

static int merge_from(unsigned code, const uint8_t *const plane[],
		      uint32_t count, uint8_t *out, uint32_t from)
{
	const uint8_t *p[STP_MAX_PLANES];
	uint32_t n = count - from;

	if (n == 0)
		return 0;
	for (unsigned i = 0; i < stp_float_nplanes(code); i++)
		p[i] = plane[i] + (is_nibbles(code, i) ? from / 2 : from);
	out += (size_t)from * stp_float_width(code);
	switch (code) {
	case STP_BF16: merge_bf16(p[0], p[1], n, out); return 0;
	case STP_F16: return merge_f16(p, n, out);
	case STP_F32: merge_f32(p, n, out); return 0;
	case STP_F64: merge_f64(p, n, out); return 0;
	case STP_E4M3: return merge_fp8(p[0], p[1], n, 3, out);
	case STP_E5M2: return merge_fp8(p[0], p[1], n, 2, out);
	}
	return STP_EFRAME;
}

/* ---- Dispatcher ---- */

struct impl {
	uint32_t (*split)(unsigned, const uint8_t *, uint32_t,
			  uint8_t *const[]);
	int (*merge)(unsigned, const uint8_t *const[], uint32_t, uint8_t *,
		     uint32_t *);
};

/* The scalar variant is the reference alone. */
static const struct impl impls[STP_IMPL_COUNT] = {
	[STP_IMPL_SCALAR] = { NULL, NULL },
	[STP_IMPL_AVX2] = { stp_planes_split_avx2, stp_planes_merge_avx2 },
	[STP_IMPL_AVX512] = { stp_planes_split_avx512,
			      stp_planes_merge_avx512 },
};

/* NULL while STP_IMPL forces a variant this CPU lacks: every call then
 * fails rather than quietly testing another variant. */
static const struct impl *impl_cur = &impls[STP_IMPL_SCALAR];

int stp_planes_force_impl(const char *name)
{
	enum stp_impl v;

	if (stp_impl_pick(name, &v) < 0)
		return STP_EUNSUPPORTED;
	impl_cur = &impls[v];
	return 0;
}

const char *stp_planes_impl_name(void)
{
	return impl_cur ? stp_impl_name((enum stp_impl)(impl_cur - impls))
			: "none";
}

__attribute__((constructor)) static void planes_init(void)
{
	if (stp_planes_force_impl(stp_impl_env()) < 0)
		impl_cur = NULL;
}

int stp_planes_split(unsigned code, const uint8_t *data, uint32_t count,
		     uint8_t *const plane[])
{
	uint32_t done = 0;

	if (!impl_cur)
		return STP_EUNSUPPORTED;
	if (stp_float_nplanes(code) == 0)
		return STP_EFRAME;
	if (impl_cur->split)
		done = impl_cur->split(code, data, count, plane);
	split_from(code, data, count, plane, done);
	return 0;
}

int stp_planes_merge(unsigned code, const uint8_t *const plane[],
		     uint32_t count, uint8_t *out)
{
	uint32_t done = 0;
	int rc;

	if (!impl_cur)
		return STP_EUNSUPPORTED;
	if (stp_float_nplanes(code) == 0)
		return STP_EFRAME;
	if (impl_cur->merge &&
	    (rc = impl_cur->merge(code, plane, count, out, &done)) < 0)
		return rc;
	return merge_from(code, plane, count, out, done);
}
