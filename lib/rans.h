/* Static order-0 rANS coder for byte planes: 32 interleaved 32-bit states
 * (4 for planes of at most STP_RANS_X4_MAX_N symbols, where 32 final
 * states would cost more than they save), 16-bit renormalisation words.
 * The coded body is specified in formats/rans.md.  Encoding and decoding
 * are allocation-free: the caller owns every buffer.  The result of an
 * encode depends only on the input bytes, never on the machine or on the
 * variant (scalar, AVX2, AVX-512) doing the work. */
#ifndef STP_RANS_H
#define STP_RANS_H

#include <stddef.h>
#include <stdint.h>

/* Largest plane one call codes (8 MiB symbols). */
#define STP_RANS_MAX_N ((size_t)8 << 20)

/* Method byte that starts every coded body. */
enum stp_rans_method {
	STP_RANS_RAW = 0,	/* the n bytes, stored */
	STP_RANS_ORDER0 = 1,	/* rANS order-0, 32 states */
	STP_RANS_RUN = 2,	/* n copies of one byte */
	STP_RANS_ORDER0_X4 = 3,	/* rANS order-0, 4 states, small planes */
	STP_RANS_ORDER0_STRIPED = 6 /* rANS order-0, 2..16 segments of 32
				     * states each: large planes */
};

/* Most segments a striped (method 6) body may have. */
#define STP_RANS_MAX_SEGS 16

/* Largest plane a method-3 (4-state) body may hold.  The encoder picks
 * the smallest of the bodies it can write, but picks method 3 only up to
 * this n, and a decoder refuses a method-3 body for a larger n: a plane
 * above it is always raw, run or 32 states, which SIMD and GPU decoders
 * take in whole groups.  4 states decode only through a scalar loop. */
#define STP_RANS_X4_MAX_N ((size_t)16384)

/* Capacity the output buffer of stp_rans_encode() must have for n symbols
 * (n <= STP_RANS_MAX_N).  The body written is never longer than n + 1
 * bytes; the extra room is scratch the encoder needs while it finds out
 * whether rANS beats storing the bytes raw. */
size_t stp_rans_bound(size_t n);

/* Codes in[0..n) into out[0..cap) and sets *out_len (at most n + 1):
 * the shortest body of raw, run, 32-state and, for n <=
 * STP_RANS_X4_MAX_N, 4-state rANS, ties going to the faster to decode.
 * Needs cap >= stp_rans_bound(n).  Returns 0, STP_ETOOBIG if n exceeds
 * STP_RANS_MAX_N or cap is too small, or STP_EUNSUPPORTED (see
 * stp_rans_force_impl).  in may be NULL when n is 0.  Uses under 16 KiB
 * of stack and no heap. */
int stp_rans_encode(const uint8_t *in, size_t n, uint8_t *out, size_t cap,
		    size_t *out_len);

/* Decodes the body in[0..len) into exactly n bytes at out (n comes from
 * the caller's metadata).  Verifies everything the format lets it verify:
 * a body that is damaged, too short, too long or made for another n
 * returns a negative code (STP_ETRUNCATED, STP_ECORRUPT, STP_ETOOBIG for
 * n > STP_RANS_MAX_N, STP_EUNSUPPORTED for an unknown method), never
 * reads outside in[0..len) and never writes outside out[0..n).  out holds
 * garbage after a failure.  Returns 0 on success.  Uses about 18 KiB of
 * stack and no heap. */
int stp_rans_decode(const uint8_t *in, size_t len, uint8_t *out, size_t n);

/* Forces the variant used by encode and decode: "scalar", "avx2",
 * "avx512", or NULL or "auto" for the best this CPU runs.  At start-up the
 * environment variable STP_IMPL does the same ("cuda", the GPU variant of
 * other stages, means auto here); if it names a variant this CPU lacks, or
 * an unknown one, every call fails with STP_EUNSUPPORTED until this
 * function picks another, so a forced test never quietly runs another
 * variant.  Returns 0, or STP_EUNSUPPORTED (nothing changed) for a variant
 * this CPU lacks or an unknown name.  Not thread-safe: call it before
 * coding starts on other threads. */
int stp_rans_force_impl(const char *name);

/* Name of the variant in use ("scalar", "avx2", "avx512"), or "none" while
 * STP_IMPL holds every call back (see above). */
const char *stp_rans_impl_name(void);

/* n * H0(in) in bits: the order-0 entropy bound of the plane, against
 * which reports measure the coder.  0 for n == 0. */
double stp_entropy0_bits(const uint8_t *in, size_t n);

/* ---- Internal: the contract between rans.c and its per-ISA files. ---- */

#define STP_RANS_LANES 32		/* interleaved states */
#define STP_RANS_X4_LANES 4		/* states of a method-3 body */
#define STP_RANS_L (1u << 15)		/* lower bound of a normalised state */
#define STP_RANS_MAX_PROB_BITS 12	/* decode table entry packing limit */
#define STP_RANS_STEP_BYTES (2 * STP_RANS_LANES) /* most one group reads */

/* Decoder: tab[slot] = symbol | (slot - start) << 8 | freq << 20 for the
 * 2^pb slots.  A group is 32 consecutive symbols, symbol j of a group
 * coded by state j. */
struct stp_rans_dec_state {
	uint32_t x[STP_RANS_LANES];
	const uint8_t *p;	/* next renormalisation word */
	const uint8_t *end;	/* end of the body */
	const uint32_t *tab;
	unsigned pb;
};

/* Encoder: per-symbol constants of the division-free update
 * x' = x + bias + mulhi32(x, rcp) >> shift * cmpl, valid for x < 2^31. */
struct stp_rans_enc_sym {
	uint32_t x_max;		/* renormalise when x > x_max */
	uint32_t rcp;
	uint32_t bias;
	uint16_t cmpl;		/* 2^pb - freq */
	uint16_t shift;
};

struct stp_rans_enc_state {
	uint32_t x[STP_RANS_LANES];
	uint8_t *p;		/* words are written downwards from here */
	const uint8_t *lo;	/* and never below this */
	const struct stp_rans_enc_sym *sym;
};

/* Decode groups 0..ngroups-1 into out, stopping early where fewer than
 * STP_RANS_STEP_BYTES remain before d->end.  Return the groups done; d->x
 * and d->p are left ready for the checked scalar code to go on. */
size_t stp_rans_dec_groups_scalar(struct stp_rans_dec_state *d,
				  uint8_t *out, size_t ngroups);
size_t stp_rans_dec_groups_avx2(struct stp_rans_dec_state *d,
				uint8_t *out, size_t ngroups);
size_t stp_rans_dec_groups_avx512(struct stp_rans_dec_state *d,
				  uint8_t *out, size_t ngroups);

/* Decode the segments of a striped body: segment k, state d[k], groups
 * 0..ngroups[k]-1 into out[k], each stopping early as the single-stream
 * decoder does; out_done[k] is set to the groups done.  The AVX-512
 * variant runs the segments side by side, so that each one's chain of
 * table lookups hides the others' latency. */
void stp_rans_dec_segs_scalar(struct stp_rans_dec_state *d, unsigned segs,
			      uint8_t *const *out, const size_t *ngroups,
			      size_t *out_done);
void stp_rans_dec_segs_avx2(struct stp_rans_dec_state *d, unsigned segs,
			    uint8_t *const *out, const size_t *ngroups,
			    size_t *out_done);
void stp_rans_dec_segs_avx512(struct stp_rans_dec_state *d, unsigned segs,
			      uint8_t *const *out, const size_t *ngroups,
			      size_t *out_done);

/* Encode groups ngroups-1 down to 0 of in.  Return 0, or -1 as soon as
 * fewer than STP_RANS_STEP_BYTES remain above e->lo before a group (the
 * body would not beat raw; e is then garbage). */
int stp_rans_enc_groups_scalar(struct stp_rans_enc_state *e,
			       const uint8_t *in, size_t ngroups);
int stp_rans_enc_groups_avx2(struct stp_rans_enc_state *e,
			     const uint8_t *in, size_t ngroups);

#endif
