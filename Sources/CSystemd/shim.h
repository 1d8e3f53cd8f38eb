/* CSystemd shim: sd_notify for Type=notify services and the watchdog. */
#ifndef CHORUS_CSYSTEMD_SHIM_H
#define CHORUS_CSYSTEMD_SHIM_H
#include <systemd/sd-daemon.h>
static inline int csd_notify(const char *state) { return sd_notify(0, state); }
#endif
