#include "error.h"

static const struct {
	const char *msg;
	int exit_status;
} error_table[STP_ERR_COUNT_] = {
	[STP_ERR_NONE_] = { "success", 0 },
#define STP_X(name, sys, msg) [STP_ERR_##name] = { msg, sys },
	STP_ERRORS(STP_X)
#undef STP_X
};

const char *stp_strerror(int code)
{
	if (code > 0)
		code = 0;
	if (-code >= STP_ERR_COUNT_)
		return "unknown error";
	return error_table[-code].msg;
}

int stp_error_exit(int code)
{
	if (code >= 0)
		return 0;
	if (-code >= STP_ERR_COUNT_)
		return 1;
	return error_table[-code].exit_status;
}
