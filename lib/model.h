/* Models that drive entropy coding, and the generic rANS coder they drive
 * (formats/model.md).  A model gives, for each symbol of a plane, the
 * frequency table that symbol is coded with, computed from what was coded
 * before it: the symbols to its left in its row, the rows above it, and,
 * for adaptive models, everything the model has seen so far in the plane.
 * Everything a model computes for coding is integer arithmetic, so the
 * decoder rebuilds the encoder's tables bit for bit on every machine.
 *
 * A model is made from the payload of a MODEL frame (stp_model_parse), or
 * learnt from planes (stp_model_fit), which writes such a payload and then
 * parses it: the encoder codes with exactly what a decoder will read, and
 * nothing a fit computed in any other form reaches the coder.  A made
 * model is read-only.  Each coding call opens its own coding state, so
 * several threads may code with one model at once. */
#ifndef STP_MODEL_H
#define STP_MODEL_H

#include <stddef.h>
#include <stdint.h>

/* Frame type of a MODEL frame (the stream's model family). */
#define STP_F_MODEL 0x20

/* Method byte of a coded body that a model drives: the next free value of
 * formats/rans.md's method table. */
#define STP_RANS_MODEL 4

#define STP_MODEL_HDR_SIZE 12		/* MODEL payload before the params */
#define STP_MODEL_MAX_ALPHABET 256
#define STP_MODEL_MAX_PROB_BITS 15	/* keeps x >> pb >= 1 for x >= 2^15 */
#define STP_MODEL_MAX_LANES 32		/* interleaved rANS states */
#define STP_MODEL_BODY_HDR 6		/* method, model id, lanes */

/* Model kinds: the number a MODEL frame stores, and the name a user
 * gives. */
enum stp_model_kind {
	STP_MODEL_ORDER0 = 1,		/* "order0": a static table */
	STP_MODEL_ADAPTIVE0 = 2,	/* "adaptive0": adaptive counts */
	STP_MODEL_CTX = 3,		/* "ctx": counts in row and column
					 * contexts */
	STP_MODEL_LSTM = 4,		/* "lstm": a recurrent network along
					 * rows, learnt by lstm-model */
	/* Not a kind a MODEL frame holds: what the front end's -m auto
	 * asks for (every kind, the smallest body a plane). */
	STP_MODEL_AUTO = 0x100
};

/* The params of a ctx model (formats/model.md, "ctx"), 16 bytes into out;
 * returns 16.  The values are checked when the model is made. */
int stp_ctx_params_build(uint8_t out[16], unsigned qbits, unsigned row_shift,
			 unsigned col_shift, uint32_t period, uint32_t limit,
			 uint32_t inc);

/* Makes the coder use every kind's predict and update, never a kind's
 * fast path (on = 1), or the fast paths where there are (on = 0).  At
 * start-up STP_IMPL=scalar means 1.  For tests, which check that both
 * give the same bytes; not thread-safe. */
void stp_model_force_generic(int on);

struct stp_model;

/* One plane, with its place in the tensor's rows: symbol 0 sits in column
 * `column` (0 .. rowlen-1) of its row, and each row holds rowlen
 * symbols, so the first and last rows of a plane may be partial. */
struct stp_model_plane {
	const uint8_t *sym;
	size_t n;
	uint64_t rowlen;
	uint64_t column;
};

/* ---- Making and writing models ---- */

/* Makes a model from a MODEL frame payload p[0..len) (formats/model.md),
 * checking every field; the model keeps a copy of the payload.  Returns 0
 * and sets *out_model (free it with stp_model_free), or STP_EFRAME (too
 * short, a field out of range, params of the wrong length),
 * STP_ERESERVED (a reserved field is not zero), STP_EUNSUPPORTED (an
 * unknown kind), STP_ECORRUPT (params that parse but are invalid, such as
 * an order0 table that does not sum to 2^prob_bits), STP_ENOMEM. */
int stp_model_parse(const uint8_t *p, size_t len,
		    struct stp_model **out_model);

/* Makes a model of a registered kind from its fields and its params
 * (the kind's bytes of the payload): the payload is built and parsed as
 * by stp_model_parse, with the same codes. */
int stp_model_create(uint32_t id, unsigned kind, unsigned alphabet,
		     unsigned prob_bits, const uint8_t *params, size_t plen,
		     struct stp_model **out_model);

/* Learns a model of a registered kind from planes[0..nplanes) (symbols
 * below alphabet, 1..256) and makes it as stp_model_create would from the
 * params it learnt.  prob_bits 0 takes the kind's default (order0: 12,
 * adaptive0: 15).  Deterministic: the same planes give the same model on
 * every machine.  An order0 model gives a zero frequency to a symbol the
 * planes lack, so it cannot code planes that hold one; adaptive0 codes
 * every symbol below alphabet; its fit picks period and limit from a
 * small grid by stp_model_estimate over the first 2^20 symbols of the
 * planes, with each plane's rows.  Returns 0, STP_EUNSUPPORTED (unknown
 * kind), STP_ERANGE (alphabet or prob_bits out of range, a symbol not
 * below alphabet, more symbols present than 2^prob_bits slots, for
 * adaptive0 2^prob_bits < alphabet), STP_EEMPTY (order0 and no symbols),
 * STP_ENOMEM. */
int stp_model_fit(uint32_t id, unsigned kind, unsigned alphabet,
		  unsigned prob_bits, const struct stp_model_plane *planes,
		  size_t nplanes, struct stp_model **out_model);

/* Frees a model; NULL is a no-op. */
void stp_model_free(struct stp_model *m);

/* The MODEL frame payload the model was made from, and its length. */
const uint8_t *stp_model_payload(const struct stp_model *m, size_t *out_len);

/* Name of a registered kind ("order0", "adaptive0"), or NULL. */
const char *stp_model_kind_name(unsigned kind);

/* Number of the kind with that name, or STP_EUNSUPPORTED. */
int stp_model_kind_by_name(const char *name);

/* ---- The generic coder (lib/rans_model.c) ---- */

/* Capacity of an output buffer that any plane of n symbols fits in:
 * stp_model_encode never writes more than 6 + 128 + 2n bytes, since a
 * symbol costs at most one 16-bit word. */
size_t stp_model_bound(size_t n);

/* Number of rows a plane of n >= 1 symbols touches, and the lane count
 * the encoder uses by default: min(32, rows).  0 for an invalid geometry
 * (n == 0, rowlen == 0, column >= rowlen). */
uint64_t stp_model_rows(size_t n, uint64_t rowlen, uint64_t column);
unsigned stp_model_default_lanes(size_t n, uint64_t rowlen,
				 uint64_t column);

/* Codes plane p (1 <= n <= STP_RANS_MAX_N) with model m into a method-4
 * body (formats/model.md) at out[0..cap) and sets *out_len.  lanes is the
 * number of interleaved states, 1 .. min(32, rows), or 0 for
 * stp_model_default_lanes().  The model is evaluated forward over the
 * plane, keeping 5 bytes per symbol of heap, then the plane is coded
 * backwards.  Returns 0, STP_EEMPTY (n == 0), STP_ETOOBIG (n too large,
 * or the body does not fit in cap: never with cap >=
 * stp_model_bound(n)), STP_ERANGE (bad geometry or lanes, a symbol that
 * is not below the model's alphabet or that the model gives frequency
 * 0), STP_ECORRUPT (the model gave an invalid table), STP_ENOMEM, or a
 * code the model returned. */
int stp_model_encode(const struct stp_model *m,
		     const struct stp_model_plane *p, unsigned lanes,
		     uint8_t *out, size_t cap, size_t *out_len);

/* Estimated length of the body stp_model_encode would write, from the
 * model's probabilities (each symbol log2(2^pb / freq) bits, to about
 * 0.002 bits), without coding or allocating per symbol: for choosing
 * between models and parameters.  Same codes as stp_model_encode. */
int stp_model_estimate(const struct stp_model *m,
		       const struct stp_model_plane *p, unsigned lanes,
		       size_t *out_len);

/* The estimates of stp_model_estimate summed over planes[0..nplanes), of
 * their first budget symbols in all (each plane with its rows), with the
 * default lanes: what a fit compares candidates by.  Same codes. */
int stp_model_estimate_planes(const struct stp_model *m,
			      const struct stp_model_plane *planes,
			      size_t nplanes, size_t budget,
			      size_t *out_len);

/* Reads the model id of a method-4 body in[0..len), so that the caller
 * can find the model it refers to.  Returns 0, STP_ETRUNCATED,
 * STP_EUNSUPPORTED (not method 4). */
int stp_model_body_id(const uint8_t *in, size_t len, uint32_t *out_id);

/* Decodes the method-4 body in[0..len) into n symbols at out, the plane's
 * geometry coming from the caller's metadata.  Checks everything: the
 * body's model id against m, the lane count, every table the model gives
 * (frequencies sum to 2^pb), every read against the end of the body,
 * that every word was read, and the final states.  Returns 0,
 * STP_ETOOBIG (n > STP_RANS_MAX_N), STP_ETRUNCATED, STP_ECORRUPT,
 * STP_EUNSUPPORTED (not method 4), STP_ENOMEM, or a code the model
 * returned.  Never reads outside in[0..len) or writes outside out[0..n);
 * out holds garbage after a failure. */
int stp_model_decode(const struct stp_model *m, const uint8_t *in,
		     size_t len, uint8_t *out, size_t n, uint64_t rowlen,
		     uint64_t column);

/* ---- For model kinds: the interface a model implements ---- */

/* What the coder tells a model about the symbol to predict.  plane[0..n)
 * is the plane; the model may read only symbols coded before this one
 * (formats/model.md, coding order), which include, when they are in the
 * plane, the symbols to its left in its row and every symbol at columns
 * <= col of the rows above it: use stp_model_left and stp_model_up. */
struct stp_model_ctx {
	const uint8_t *plane;
	size_t i;		/* index of the symbol in the plane */
	uint64_t row;		/* its row: 0 for the row of symbol 0 */
	uint64_t col;		/* its column, 0 .. rowlen-1 */
	uint64_t rowlen;
	unsigned lane;		/* the state coding it, 0 .. lanes-1 */
};

/* The symbol k >= 1 places left of the current one in its row, or -1
 * where that is left of the plane's start or of the row. */
static inline int stp_model_left(const struct stp_model_ctx *c, uint64_t k)
{
	return k <= c->col && k <= c->i ? c->plane[c->i - k] : -1;
}

/* The symbol of the row above, k >= 0 columns left of the current one,
 * or -1 where there is none in the plane. */
static inline int stp_model_up(const struct stp_model_ctx *c, uint64_t k)
{
	return k <= c->col && k <= c->i && c->i - k >= c->rowlen
	       ? c->plane[c->i - k - c->rowlen] : -1;
}

/* Where a coding state learns the plane's shape. */
struct stp_model_geom {
	size_t n;
	uint64_t rowlen, column, rows;
	unsigned lanes;
};

struct walk;	/* lib/model_walk.h */

/* A model kind.  Coding calls open() once per plane, then, for each
 * symbol in coding order: start_row() if it is the first symbol of its
 * row in the plane, predict(), and update() with the symbol; then
 * close().  A model must give the same tables for the same sequence of
 * calls, whatever the machine. */
struct stp_model_ops {
	unsigned kind;
	const char *name;
	unsigned default_prob_bits;

	/* Checks params[0..len) against m->alphabet and m->prob_bits and sets
	 * m->priv.  0, STP_EFRAME (wrong length), STP_ERESERVED,
	 * STP_ECORRUPT (invalid values), STP_ENOMEM. */
	int (*parse)(struct stp_model *m, const uint8_t *params, size_t len);
	/* Frees m->priv. */
	void (*free_priv)(void *priv);

	/* Learns params from planes and returns them as a malloc'd block
	 * *out_params (the caller frees it) of *out_len bytes.  NULL where
	 * the kind cannot learn.  Codes as stp_model_fit. */
	int (*fit)(unsigned alphabet, unsigned prob_bits,
		   const struct stp_model_plane *planes, size_t nplanes,
		   uint8_t **out_params, size_t *out_len);

	/* A fresh coding state for one plane in *out_state.  0,
	 * STP_ENOMEM. */
	int (*open)(const struct stp_model *m, const struct stp_model_geom *g,
		    void **out_state);
	void (*close)(void *state);
	/* May be NULL: nothing to do at a row's start. */
	void (*start_row)(void *state, const struct stp_model_ctx *ctx);
	/* Sets *out_freq to the frequencies of symbols 0 .. alphabet-1 for
	 * this symbol (the model keeps them until its next call), summing to
	 * exactly 2^prob_bits.  Returns 1 when they may differ from the
	 * previous call's, 0 when they are the same table at the same
	 * address (the coder then reuses what it derived from it), or a
	 * negative code. */
	int (*predict)(void *state, const struct stp_model_ctx *ctx,
		       const uint32_t **out_freq);
	/* May be NULL for static models: the symbol just coded. */
	void (*update)(void *state, const struct stp_model_ctx *ctx,
		       unsigned symbol);

	/* Optional fast paths, for a kind whose tables are valid by
	 * construction (it builds them itself from its counts, so the
	 * coder's check of each table cannot fail): the whole plane in one
	 * loop, with exactly the tables predict and update give.  forward
	 * is the encoder's forward pass of lib/rans_model.c (pairs and
	 * lane_of, or the cost in Q24 bits in *out_bits when pairs is NULL);
	 * decode decodes the symbols in coding order from the states x and
	 * the words at *pp, checking every read against end, as the generic
	 * decoder does, and leaves x and *pp at the end. */
	int (*forward)(const struct stp_model *m, const struct walk *w,
		       const uint8_t *plane, uint32_t *pairs,
		       uint8_t *lane_of, uint64_t *out_bits);
	int (*decode)(const struct stp_model *m, const struct walk *w,
		      uint32_t x[], const uint8_t **pp, const uint8_t *end,
		      uint8_t *out);
};

extern const struct stp_model_ops stp_model_ctx_ops, stp_model_lstm_ops;

/* A model: read-only once made. */
struct stp_model {
	const struct stp_model_ops *ops;
	uint32_t id;
	unsigned kind, alphabet, prob_bits;
	uint8_t *payload;	/* the MODEL frame payload */
	size_t len;
	uint32_t hash;		/* FNV-1a-32 of the payload */
	void *priv;		/* the kind's parsed params */
};

/* Makes a model driven by ops, which need not be registered (a kind under
 * development, a test's model): builds the payload from the fields and
 * params and parses it with ops->parse.  Codes as stp_model_create. */
int stp_model_create_ops(const struct stp_model_ops *ops, uint32_t id,
			 unsigned alphabet, unsigned prob_bits,
			 const uint8_t *params, size_t plen,
			 struct stp_model **out_model);

/* log2(v) in Q8.24 for 1 <= v < 2^31, exactly as formats/rans.md's
 * encoder computes it: integer arithmetic, the same on every machine. */
uint32_t stp_model_log2_q24(uint32_t v);

#endif
