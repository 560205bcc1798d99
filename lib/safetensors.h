/* Parsing and validating a safetensors header (formats/stream.md, "How
 * st-split cuts a safetensors file"). */
#ifndef STP_SAFETENSORS_H
#define STP_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "stream.h"

#define STP_ST_MAX_HEADER 100000000u

struct stp_st_tensor {
	char *name;
	char dtype[STP_MAX_DTYPE + 1];
	unsigned esize;
	unsigned ndim;
	uint64_t shape[STP_MAX_NDIM];
	uint64_t begin, end;      /* absolute file offsets */
};

struct stp_st_header {
	uint64_t header_len;      /* N: JSON bytes after the 8-byte prefix */
	size_t count;
	struct stp_st_tensor *tensors;   /* sorted by begin offset */
	uint64_t data_end;        /* largest tensor end, absolute */
};

/* Parses the N header bytes at json (N = header_len). On failure returns a
 * negative code and, when a tensor is at fault, copies its name into
 * where (at most wcap bytes, NUL-terminated). On success *out owns memory
 * released by stp_st_free(). */
int stp_st_parse(const uint8_t *json, size_t n, struct stp_st_header *out,
		 char *where, size_t wcap);

void stp_st_free(struct stp_st_header *h);

/* 1 if the first 9 bytes of a file look like a safetensors header
 * (a plausible length followed by '{'). */
int stp_st_sniff(const uint8_t *p, size_t n);

#endif
