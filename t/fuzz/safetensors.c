/* The safetensors header parser (lib/safetensors.h stp_st_parse) and
 * stp_st_sniff.  Input: the N bytes of header JSON that follow the
 * 8-byte length.  A header the parser takes must describe tensors that
 * st-split can cut: sorted by offset, disjoint, each as long as its dtype
 * and shape say, all inside data_end. */
#include "fuzz.h"

#include "../../lib/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct stp_st_header h;
	char where[256];
	uint8_t *json = malloc(size ? size : 1);
	uint64_t prev = 0;

	if (!json)
		return 0;
	/* An exact-size copy: ASan then sees any read past the end. */
	memcpy(json, data, size);
	(void)stp_st_sniff(json, size);
	if (stp_st_parse(json, size, &h, where, sizeof where) == 0) {
		FUZZ_CHECK(h.header_len == size);
		prev = 8 + (uint64_t)size;
		for (size_t i = 0; i < h.count; i++) {
			const struct stp_st_tensor *t = &h.tensors[i];
			uint64_t count = 1;

			FUZZ_CHECK(t->name != NULL);
			FUZZ_CHECK(t->esize == stp_dtype_size(t->dtype));
			FUZZ_CHECK(t->esize > 0 && t->ndim <= STP_MAX_NDIM);
			FUZZ_CHECK(t->begin >= prev && t->begin <= t->end);
			FUZZ_CHECK(t->end <= h.data_end);
			for (unsigned d = 0; d < t->ndim; d++)
				count *= t->shape[d];
			FUZZ_CHECK(count * t->esize == t->end - t->begin);
			if (t->end > prev)
				prev = t->end;
		}
		FUZZ_CHECK(prev == h.data_end);
		stp_st_free(&h);
	} else {
		FUZZ_CHECK(memchr(where, '\0', sizeof where) != NULL);
	}
	free(json);
	return 0;
}
