/* Prediction of integer tensors (formats/predict.md): each value of an
 * I8 or U8 tensor replaced by its residual against a prediction from its
 * left, upper and upper-left neighbours in the tensor's rows, with one
 * predictor per chunk of values; the RESIDUAL frame (0x11) that holds
 * them and its coded form CODED_RESIDUAL (0x32); and the predict stage. */
#ifndef STP_PREDICT_H
#define STP_PREDICT_H

#include <stddef.h>
#include <stdint.h>

#include "stage.h"

#define STP_F_RESIDUAL 0x11
#define STP_F_CODED_RESIDUAL 0x32
#define STP_RESID_FIXED 40        /* header bytes before the predictor ids */
#define STP_RESID_CHUNK 4096      /* values per chunk that predict writes */
/* Fewer values than this in a DATA frame stay DATA. */
#define STP_RESID_MIN 64
/* Most values one RESIDUAL frame that predict writes holds. */
#define STP_RESID_MAX_VALUES ((uint32_t)4 << 20)

enum stp_int_code { STP_INT_I8 = 1, STP_INT_U8 = 2 };

enum stp_predictor {
	STP_PRED_NONE = 0, STP_PRED_LEFT = 1, STP_PRED_UP = 2,
	STP_PRED_AVG = 3, STP_PRED_GRAD = 4, STP_PRED_MED = 5,
	STP_PRED_COUNT = 6
};

struct stp_resid_hdr {
	uint64_t offset;
	uint32_t count;
	unsigned dtype;           /* enum stp_int_code */
	uint64_t rowlen;
	uint64_t column;
	uint32_t chunk;           /* values per chunk */
	uint32_t nchunks;         /* ceil(count / chunk) */
};

/* The code of a safetensors dtype string ("I8", "U8"), or 0. */
unsigned stp_int_code(const char *dtype);

/* Name of a predictor id ("none", "left", ...), or NULL if unknown. */
const char *stp_predictor_name(unsigned id);

/* Writes the STP_RESID_FIXED header bytes of h into buf. */
void stp_resid_hdr_build(const struct stp_resid_hdr *h, uint8_t *buf);

/* Parses and checks the fixed header of a RESIDUAL or CODED_RESIDUAL
 * payload of len bytes: reserved fields, dtype, count, rowlen, column,
 * chunk and nchunks, and that the predictor ids are there. Returns
 * STP_RESID_FIXED or a negative code. */
int stp_resid_hdr_parse(const uint8_t *p, size_t len,
			struct stp_resid_hdr *out);

/* Residuals of h->count values: the predictor of each chunk chosen by
 * the order-0 cost of its residuals (ties to the lower id), written to
 * ids[0..nchunks) and resid[0..count). Returns the estimated cost of the
 * residuals and of the values as they are, in 1/65536 bits, through
 * out_resid_cost and out_raw_cost (either may be NULL). */
void stp_predict_forward(const struct stp_resid_hdr *h, const uint8_t *values,
			 uint8_t *ids, uint8_t *resid,
			 uint64_t *out_resid_cost, uint64_t *out_raw_cost);

/* The inverse: values from ids and residuals. 0, or STP_EFRAME for an
 * unknown predictor id (values then hold garbage). */
int stp_predict_inverse(const struct stp_resid_hdr *h, const uint8_t *ids,
			const uint8_t *resid, uint8_t *values);

/* RESIDUAL payload p -> DATA payload at out (room: 8 + count), setting
 * *out_len; checks the payload completely. 0 or a negative code. */
int stp_resid_merge(const uint8_t *p, size_t len, uint8_t *out,
		    size_t *out_len);

/* Room stp_resid_code needs for a RESIDUAL payload of len bytes. */
size_t stp_resid_code_bound(size_t len);

/* RESIDUAL payload -> CODED_RESIDUAL payload at out (cap bytes), setting
 * *out_len: the header and ids unchanged, then one rANS body of the
 * residuals. Checks the input completely. 0 or a negative code. */
int stp_resid_code(const uint8_t *p, size_t len, uint8_t *out, size_t cap,
		   size_t *out_len);

/* CODED_RESIDUAL payload -> RESIDUAL payload at out (room:
 * STP_MAX_PAYLOAD), setting *out_len; checks what it decodes. 0 or a
 * negative code. */
int stp_resid_decode(const uint8_t *p, size_t len, uint8_t *out,
		     size_t *out_len);

/* The predict stage: DATA frames of I8 and U8 tensors of rank 2 or more
 * -> RESIDUAL frames where that pays (every such frame with all set), or
 * with decode set RESIDUAL frames -> DATA. 0 or STP_ENOMEM. */
int stp_predict_open(struct stp_stage *out_st, int decode, int all);

#endif
