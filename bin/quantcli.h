/* The main of int8-quant and fp8-quant; kind is an stp_quant_kind. */
#ifndef STP_QUANTCLI_H
#define STP_QUANTCLI_H

int quant_main(int argc, char **argv, const char *name, int kind);

#endif
