/* mkbig: write a synthetic BF16 safetensors file of about SIZE MiB for
 * benchmarks. Values are weight-like (roughly normal, std 0.02) from a fixed
 * generator, so the same SIZE gives the same bytes everywhere.
 * Usage: mkbig SIZE_MIB > FILE */
#include <inttypes.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define COLS 4096u

static uint64_t rng = 0x9E3779B97F4A7C15u;

static uint32_t next32(void)
{
	rng ^= rng >> 12;
	rng ^= rng << 25;
	rng ^= rng >> 27;
	return (uint32_t)((rng * 0x2545F4914F6CDD1Du) >> 32);
}

/* Sum of four uniforms: close enough to normal for exponent statistics. */
static uint16_t weight_bf16(void)
{
	float v = 0;
	uint32_t bits;

	for (int i = 0; i < 4; i++)
		v += (float)next32() / 4294967296.0f - 0.5f;
	v *= 0.02f * 1.7320508f;
	memcpy(&bits, &v, 4);
	bits += 0x7FFF + ((bits >> 16) & 1);
	return (uint16_t)(bits >> 16);
}

int main(int argc, char **argv)
{
	uint64_t mib = argc > 1 ? strtoull(argv[1], NULL, 10) : 0;
	uint64_t rows_per_tensor = 4096, tensors, off = 0;
	static uint8_t row[2 * COLS];
	char header[1 << 16];
	size_t n = 0, pad;

	if (mib == 0) {
		fprintf(stderr, "usage: mkbig SIZE_MIB > FILE\n");
		return 100;
	}
	tensors = mib * 1048576 / (rows_per_tensor * COLS * 2);
	if (tensors == 0)
		tensors = 1;
	n += (size_t)snprintf(header + n, sizeof header - n,
			      "{\"__metadata__\":{\"format\":\"pt\"}");
	for (uint64_t t = 0; t < tensors; t++) {
		uint64_t bytes = rows_per_tensor * COLS * 2;
		n += (size_t)snprintf(header + n, sizeof header - n,
			",\"layers.%" PRIu64 ".weight\":{\"dtype\":\"BF16\","
			"\"shape\":[%" PRIu64 ",%u],\"data_offsets\":[%" PRIu64
			",%" PRIu64 "]}", t, rows_per_tensor, COLS, off,
			off + bytes);
		off += bytes;
	}
	header[n++] = '}';
	pad = (8 - (8 + n) % 8) % 8;
	memset(header + n, ' ', pad);
	n += pad;
	for (int i = 0; i < 8; i++)
		putchar((int)(((uint64_t)n >> (8 * i)) & 0xFF));
	fwrite(header, 1, n, stdout);
	for (uint64_t r = 0; r < tensors * rows_per_tensor; r++) {
		for (unsigned c = 0; c < COLS; c++) {
			uint16_t v = weight_bf16();
			row[2 * c] = (uint8_t)v;
			row[2 * c + 1] = (uint8_t)(v >> 8);
		}
		fwrite(row, 1, sizeof row, stdout);
	}
	return fflush(stdout) == 0 ? 0 : 111;
}
