/* exp-plane: writes the exponent plane of the BF16 tensors of safetensors
 * files ((x >> 7) & 0xFF of each value, formats/planes.md) to stdout, for
 * share/bench/rans-bench. A benchmark helper, not a test.
 * Usage: exp-plane FILE... > PLANE */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../lib/safetensors.h"

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		FILE *f = fopen(argv[i], "rb");
		struct stp_st_header h;
		char where[256];
		uint8_t *buf;
		long size;

		if (!f || fseek(f, 0, SEEK_END) || (size = ftell(f)) < 8)
			return 111;
		buf = malloc((size_t)size);
		rewind(f);
		if (!buf || fread(buf, 1, (size_t)size, f) != (size_t)size)
			return 111;
		fclose(f);
		if (stp_st_parse(buf + 8, (size_t)stp_get64(buf), &h, where,
				 sizeof where) < 0)
			return 1;
		for (size_t t = 0; t < h.count; t++) {
			if (strcmp(h.tensors[t].dtype, "BF16") != 0)
				continue;
			for (uint64_t at = h.tensors[t].begin;
			     at < h.tensors[t].end; at += 2)
				putchar((buf[at + 1] << 1 | buf[at] >> 7) & 0xFF);
		}
		stp_st_free(&h);
		free(buf);
	}
	return fflush(stdout) ? 111 : 0;
}
