/* stpipe error codes. The list itself (STP_ERRORS: the enum, the message
 * table and the exit status a program reports for each, 1 bad input, 100
 * usage, 111 system) is public, in stpipe.h. Library functions return 0
 * (or a count) on success and a negative STP_E* code on failure. */
#ifndef STP_ERROR_H
#define STP_ERROR_H

#include "stpipe.h"

#endif
