/* CSystemd shim: the parts of libsystemd chorusd uses — sd_notify (Type=notify, the watchdog),
 * socket activation (sd_listen_fds_with_names and the socket type checks) and the journal's
 * native protocol (sd_journal_sendv). Swift calls these csd_ functions only. */
#ifndef CHORUS_CSYSTEMD_SHIM_H
#define CHORUS_CSYSTEMD_SHIM_H
/* chorusd sends its own CODE_FILE/CODE_LINE/CODE_FUNC (the Swift caller's), not this header's. */
#define SD_JOURNAL_SUPPRESS_LOCATION 1
#include <stdint.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <systemd/sd-daemon.h>
#include <systemd/sd-journal.h>

/* sd_notify(0, state): > 0 sent, 0 when $NOTIFY_SOCKET is not set, < 0 a negative errno. */
static inline int csd_notify(const char *state) { return sd_notify(0, state); }

/* The passed descriptors (from SD_LISTEN_FDS_START) and their names; with unset != 0 the
 * LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES variables are removed from the environment.
 * Returns the count (0: none for this process) or a negative errno. *names (may be NULL when the
 * count is 0) is a malloc'd NULL-terminated array of malloc'd strings: free with csd_free_names. */
static inline int csd_listen_fds_with_names(int unset, char ***names) { return sd_listen_fds_with_names(unset, names); }

/* Frees what csd_listen_fds_with_names returned. */
static inline void csd_free_names(char **names) {
    if (names == NULL) return;
    for (char **p = names; *p != NULL; p++) free(*p);
    free(names);
}

/* The first passed descriptor (3). */
static inline int csd_listen_fds_start(void) { return SD_LISTEN_FDS_START; }

/* 1 when fd is a listening AF_UNIX SOCK_STREAM socket, 0 when not, < 0 a negative errno. */
static inline int csd_is_listening_unix_stream(int fd) { return sd_is_socket_unix(fd, SOCK_STREAM, 1, NULL, 0); }

/* 1 when fd is a listening AF_INET or AF_INET6 SOCK_STREAM socket, 0 when not, < 0 a negative errno. */
static inline int csd_is_listening_inet_stream(int fd) { return sd_is_socket_inet(fd, AF_UNSPEC, SOCK_STREAM, 1, 0); }

/* > 0 when the service manager expects watchdog pings from this process ($WATCHDOG_USEC set and
 * $WATCHDOG_PID unset or equal to our pid), with the interval in *usec; 0 when not; < 0 a negative
 * errno. With unset != 0 the two variables are removed from the environment. */
static inline int csd_watchdog_enabled(int unset, uint64_t *usec) { return sd_watchdog_enabled(unset, usec); }

/* One structured journal entry: each iovec is one "FIELD=value" (values may hold any bytes).
 * Returns 0 or a negative errno (for example when journald's socket does not exist). */
static inline int csd_journal_send_fields(const struct iovec *fields, int count) { return sd_journal_sendv(fields, count); }

#endif
