/* CLibUV shim: libuv plus the few helpers Swift cannot express (macros, signal dispositions). */
#ifndef CHORUS_CLIBUV_SHIM_H
#define CHORUS_CLIBUV_SHIM_H
#include <uv.h>
#include <signal.h>
#include <errno.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/stat.h>
#include <unistd.h>

/* libuv does not ignore SIGPIPE: a peer that disconnects mid-write would kill the process. */
static inline int cuv_ignore_sigpipe(void) {
    struct sigaction sa;
    sa.sa_handler = SIG_IGN;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    return sigaction(SIGPIPE, &sa, NULL);
}

/* Peer credentials of a connected Unix socket (SO_PEERCRED). Returns 0 or -errno. */
static inline int cuv_peer_credentials(int fd, int *pid, unsigned int *uid, unsigned int *gid) {
    struct ucred cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    *pid = (int)cred.pid; *uid = (unsigned int)cred.uid; *gid = (unsigned int)cred.gid;
    return 0;
}

static inline int cuv_errno(void) { return errno; }
static inline int cuv_eagain(void) { return UV_EAGAIN; }
static inline int cuv_eof(void) { return UV_EOF; }
#endif
