#ifndef STP_VERSION_H
#define STP_VERSION_H
#define STP_VERSION_STRING "0.1.0"
#endif
