/* int8-quant: the lossy INT8 quantizer (bin/quantcli.c, lib/lossy.c). */
#include "../lib/lossy.h"
#include "quantcli.h"

int main(int argc, char **argv)
{
	return quant_main(argc, argv, "int8-quant", STP_QUANT_INT8);
}
