/* stpipe error codes: one list gives the enum, the message table and the
 * exit status a program reports for each (1 bad input, 100 usage, 111
 * system). Library functions return 0 (or a count) on success and a
 * negative STP_E* code on failure. */
#ifndef STP_ERROR_H
#define STP_ERROR_H

/* X(name, exit status, message) */
#define STP_ERRORS(X) \
	X(IO,       111, "input/output error") \
	X(NOMEM,    111, "out of memory") \
	X(EMPTY,      1, "empty input") \
	X(MAGIC,      1, "bad magic number") \
	X(VERSION,    1, "unsupported format version") \
	X(RESERVED,   1, "reserved field is not zero") \
	X(CRC,        1, "CRC-32 mismatch") \
	X(TRUNCATED,  1, "truncated input") \
	X(TOOBIG,     1, "length exceeds limit") \
	X(FRAME,      1, "malformed frame") \
	X(ORDER,      1, "frame out of order") \
	X(TOTALS,     1, "end frame totals do not match the stream") \
	X(TRAILING,   1, "trailing garbage after end of stream") \
	X(HEADER,     1, "invalid safetensors header") \
	X(JSON,       1, "invalid JSON") \
	X(RANGE,      1, "offsets out of range") \
	X(OVERLAP,    1, "overlapping tensors") \
	X(SIZE,       1, "size does not match dtype and shape") \
	X(DTYPE,      1, "unknown dtype") \
	X(PATH,       1, "unsafe or invalid path") \
	X(ARCHIVE,    1, "invalid or unsupported archive") \
	X(UNSUPPORTED,1, "unsupported feature") \
	X(CORRUPT,    1, "corrupt coded data") \
	X(CHECKSUM,   1, "file checksum mismatch") \
	X(UNDECODED,  1, "frame must be decoded by an earlier stage") \
	X(EXIST,    100, "output exists (use -f to overwrite)") \
	X(MANY,       1, "stream holds more than one file (use -o DIR/ or -o NAME.tar)") \
	X(NODEVICE, 111, "no usable GPU")

/* Positive indices 1..N in list order; the codes are their negatives. */
enum stp_error_index {
	STP_ERR_NONE_ = 0,
#define STP_X(name, sys, msg) STP_ERR_##name,
	STP_ERRORS(STP_X)
#undef STP_X
	STP_ERR_COUNT_
};

enum stp_error {
	STP_OK = 0,
#define STP_X(name, sys, msg) STP_E##name = -STP_ERR_##name,
	STP_ERRORS(STP_X)
#undef STP_X
};

/* Message for a code (0 gives "success"); never NULL. */
const char *stp_strerror(int code);

/* The exit status for a code: 1 (the input is at fault), 100 (usage) or
 * 111 (system or I/O failure); 0 for success. */
int stp_error_exit(int code);

#endif
