/* STP_IMPL names and the CPU checks behind them (lib/impl.h). */
#include "impl.h"

#include <stdlib.h>
#include <string.h>

#include "error.h"

static const char *const names[STP_IMPL_COUNT] = {
	[STP_IMPL_SCALAR] = "scalar",
	[STP_IMPL_AVX2] = "avx2",
	[STP_IMPL_AVX512] = "avx512",
};

/* What the GNUmakefile's ISA_FLAGS let the compiler use in each file:
 * -mavx2 -mbmi2 (and with -mavx2, POPCNT) for *_avx2.c, -mavx512f
 * -mavx512bw for *_avx512.c, whose variant may also call *_avx2.c code.
 * __builtin_cpu_supports also checks that the OS saves the registers. */
static int have(enum stp_impl impl)
{
	/* Constructors that call in may run before libgcc has probed. */
	__builtin_cpu_init();
	switch (impl) {
	case STP_IMPL_SCALAR:
		return 1;
	case STP_IMPL_AVX2:
		return __builtin_cpu_supports("avx2") &&
		       __builtin_cpu_supports("bmi2") &&
		       __builtin_cpu_supports("popcnt");
	case STP_IMPL_AVX512:
		return have(STP_IMPL_AVX2) &&
		       __builtin_cpu_supports("avx512f") &&
		       __builtin_cpu_supports("avx512bw");
	default:
		return 0;
	}
}

int stp_impl_pick(const char *name, enum stp_impl *out_impl)
{
	int i;

	if (!name || !strcmp(name, "auto") || !strcmp(name, "cuda")) {
		for (i = STP_IMPL_COUNT - 1; i > 0 && !have(i); i--)
			;
		*out_impl = (enum stp_impl)i;
		return 0;
	}
	for (i = 0; i < STP_IMPL_COUNT; i++) {
		if (strcmp(name, names[i]))
			continue;
		if (!have(i))
			return STP_EUNSUPPORTED;
		*out_impl = (enum stp_impl)i;
		return 0;
	}
	return STP_EUNSUPPORTED;
}

const char *stp_impl_env(void)
{
	const char *env = getenv("STP_IMPL");

	return env && *env ? env : NULL;
}

const char *stp_impl_name(enum stp_impl impl)
{
	return impl < STP_IMPL_COUNT ? names[impl] : "none";
}
