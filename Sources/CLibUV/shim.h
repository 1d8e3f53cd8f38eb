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
#include <stdio.h>

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
    /* Layout of struct ucred, which the system headers only declare under _GNU_SOURCE
     * (not set when Swift builds the Glibc module). */
    struct { pid_t pid; uid_t uid; gid_t gid; } cred;
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return -errno;
    *pid = (int)cred.pid; *uid = (unsigned int)cred.uid; *gid = (unsigned int)cred.gid;
    return 0;
}

static inline int cuv_errno(void) { return errno; }
static inline int cuv_eagain(void) { return UV_EAGAIN; }
static inline int cuv_eof(void) { return UV_EOF; }

/* ---- Helpers used by ChorusLoop (cuv_ prefix). ---- */
#include <fcntl.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>

/* open(2) with an explicit mode (open is variadic in C, so Swift calls this instead). Returns fd or -1/errno. */
static inline int cuv_open(const char *path, int flags, mode_t mode) { return open(path, flags, mode); }

/* Capacity of sockaddr_un.sun_path, including the terminating NUL. */
static inline size_t cuv_unix_path_capacity(void) { return sizeof(((struct sockaddr_un *)0)->sun_path); }

/* Blocking connect to a Unix-domain stream socket. Returns the connected fd (CLOEXEC) or -errno. */
static inline int cuv_unix_connect(const char *path) {
    struct sockaddr_un addr;
    size_t len = strlen(path);
    if (len >= sizeof(addr.sun_path)) return -ENAMETOOLONG;
    memset(&addr, 0, sizeof(addr));
    addr.sun_family = AF_UNIX;
    memcpy(addr.sun_path, path, len + 1);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc;
    do { rc = connect(fd, (struct sockaddr *)&addr, sizeof(addr)); } while (rc != 0 && errno == EINTR);
    if (rc != 0) { int e = errno; close(fd); return -e; }
    return fd;
}

/* Blocking TCP connect to a numeric IPv4 or IPv6 address. Returns the connected fd (CLOEXEC) or -errno. */
static inline int cuv_tcp_connect(const char *ip, int port) {
    struct sockaddr_storage ss;
    socklen_t sl;
    memset(&ss, 0, sizeof(ss));
    struct sockaddr_in *a4 = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET; a4->sin_port = htons((uint16_t)port); sl = sizeof(*a4);
    } else if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6; a6->sin6_port = htons((uint16_t)port); sl = sizeof(*a6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    int rc;
    do { rc = connect(fd, (struct sockaddr *)&ss, sl); } while (rc != 0 && errno == EINTR);
    if (rc != 0) { int e = errno; close(fd); return -e; }
    return fd;
}

/* Identity of a filesystem entry (lstat): device, inode and whether it is a socket. Returns 0 or -errno. */
static inline int cuv_path_identity(const char *path, unsigned long long *dev, unsigned long long *ino, int *is_socket) {
    struct stat st;
    if (lstat(path, &st) != 0) return -errno;
    *dev = (unsigned long long)st.st_dev; *ino = (unsigned long long)st.st_ino;
    *is_socket = S_ISSOCK(st.st_mode) ? 1 : 0;
    return 0;
}

/* Formats an AF_INET/AF_INET6 socket address as "ip:port" ("[ip]:port" for IPv6) into buf. Returns the port or -1. */
static inline int cuv_sockaddr_format(const struct sockaddr_storage *ss, char *buf, size_t buflen) {
    char ip[INET6_ADDRSTRLEN];
    if (ss->ss_family == AF_INET) {
        const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
        if (!inet_ntop(AF_INET, &a->sin_addr, ip, sizeof(ip))) return -1;
        int port = ntohs(a->sin_port);
        snprintf(buf, buflen, "%s:%d", ip, port);
        return port;
    }
    if (ss->ss_family == AF_INET6) {
        const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
        if (!inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof(ip))) return -1;
        int port = ntohs(a->sin6_port);
        snprintf(buf, buflen, "[%s]:%d", ip, port);
        return port;
    }
    if (buflen > 0) buf[0] = 0;
    return -1;
}

/* Socket buffer sizes (SO_SNDBUF / SO_RCVBUF) of a socket fd. Returns 0 or -errno. */
static inline int cuv_set_socket_buffers(int fd, int sndbuf, int rcvbuf) {
    if (sndbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) != 0) return -errno;
    if (rcvbuf > 0 && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) != 0) return -errno;
    return 0;
}

#include <sys/prctl.h>
/* Names the calling thread (first 15 bytes), as shown by top -H and /proc/<pid>/task/<tid>/comm. */
static inline int cuv_set_thread_name(const char *name) { return prctl(PR_SET_NAME, name, 0, 0, 0) == 0 ? 0 : -errno; }
#endif
