/* Which CPU variant of a kernel runs: the one STP_IMPL names, or the best
 * this CPU has.  Every dispatcher (rANS, planes) resolves names here, so
 * one setting forces every CPU stage alike. */
#ifndef STP_IMPL_H
#define STP_IMPL_H

/* The CPU variants, worst first; dispatch tables are indexed by these. */
enum stp_impl {
	STP_IMPL_SCALAR,
	STP_IMPL_AVX2,		/* AVX2 and BMI2: the *_avx2.c files */
	STP_IMPL_AVX512,	/* AVX-512 F and BW, and all of AVX2 above */
	STP_IMPL_COUNT
};

/* Resolves name to the variant to run: "scalar", "avx2" or "avx512" as
 * named; NULL, "auto" or "cuda" (the GPU variant of other stages, which
 * leaves the CPU stages at their best) as the best this CPU runs.  Sets
 * *out_impl and returns 0, or returns STP_EUNSUPPORTED (*out_impl
 * untouched) for an unknown name or a variant this CPU lacks. */
int stp_impl_pick(const char *name, enum stp_impl *out_impl);

/* The environment variable STP_IMPL, or NULL when it is unset or empty. */
const char *stp_impl_env(void);

/* "scalar", "avx2" or "avx512". */
const char *stp_impl_name(enum stp_impl impl);

#endif
