/* CEtPan shim: libetpan (IMAP) calls Swift cannot make directly wrapped in cetpan_* functions —
 * clist walking (macros), union field access, a TCP connect with a timeout, TLS with SNI, and the
 * verification of the server's certificate chain with GnuTLS (libetpan's GnuTLS build verifies nothing). */
#ifndef CHORUS_CETPAN_SHIM_H
#define CHORUS_CETPAN_SHIM_H
#include <libetpan/libetpan.h>
#include <gnutls/gnutls.h>
#include <gnutls/x509.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* MARK: clist (its accessors are macros) */
static inline clistiter *cetpan_clist_begin(clist *list) { return list == NULL ? NULL : clist_begin(list); }
static inline clistiter *cetpan_clist_next(clistiter *iter) { return clist_next(iter); }
static inline void *cetpan_clist_content(clistiter *iter) { return clist_content(iter); }
static inline int cetpan_clist_count(clist *list) { return list == NULL ? 0 : clist_count(list); }

/* MARK: TCP connect with a timeout (libetpan's own connect has none). Returns a blocking, close-on-exec
 * socket, or -1 with a message in err. */
static inline int cetpan_tcp_connect(const char *host, uint16_t port, int timeout_ms, char *err, size_t errlen) {
    struct addrinfo hints, *list = NULL, *ai;
    char service[8];
    int fd = -1, rc, last_errno = 0;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    snprintf(service, sizeof service, "%u", (unsigned)port);
    rc = getaddrinfo(host, service, &hints, &list);
    if (rc != 0) {
        snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(rc));
        return -1;
    }
    for (ai = list; ai != NULL; ai = ai->ai_next) {
        int flags, soerr = 0;
        socklen_t len = sizeof soerr;
        struct pollfd pfd;
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
        if (fd < 0) { last_errno = errno; continue; }
        flags = fcntl(fd, F_GETFL, 0);
        fcntl(fd, F_SETFL, flags | O_NONBLOCK);
        rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
        if (rc != 0 && errno == EINPROGRESS) {
            pfd.fd = fd;
            pfd.events = POLLOUT;
            do { rc = poll(&pfd, 1, timeout_ms); } while (rc < 0 && errno == EINTR);
            if (rc == 0) { last_errno = ETIMEDOUT; close(fd); fd = -1; continue; }
            if (rc < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) != 0) soerr = errno;
            rc = soerr == 0 ? 0 : -1;
            if (soerr != 0) errno = soerr;
        }
        if (rc != 0) { last_errno = errno; close(fd); fd = -1; continue; }
        fcntl(fd, F_SETFL, flags & ~O_NONBLOCK);
        break;
    }
    freeaddrinfo(list);
    if (fd < 0) snprintf(err, errlen, "%s", strerror(last_errno != 0 ? last_errno : ECONNREFUSED));
    return fd;
}

/* MARK: TLS with SNI through libetpan's callback (the host name must outlive the handshake). */
static inline void cetpan_sni_callback(struct mailstream_ssl_context *context, void *data) {
    if (data != NULL) mailstream_ssl_set_server_name(context, (char *)data);
}
/* Implicit TLS on a connected socket; sni NULL for an IP address. */
static inline mailstream *cetpan_ssl_open(int fd, time_t timeout, const char *sni) {
    return mailstream_ssl_open_with_callback_timeout(fd, timeout, cetpan_sni_callback, (void *)sni);
}
/* The TLS layer for STARTTLS on the socket of an existing stream: replaces the stream's plain layer.
 * Returns 0, or -1 when the handshake fails (the stream keeps its plain layer). */
static inline int cetpan_starttls_upgrade(mailstream *stream, time_t timeout, const char *sni) {
    mailstream_low *plain = mailstream_get_low(stream);
    int fd = mailstream_low_get_fd(plain);
    mailstream_low *tls;
    if (fd < 0) return -1;
    tls = mailstream_low_tls_open_with_callback_timeout(fd, timeout, cetpan_sni_callback, (void *)sni);
    if (tls == NULL) return -1;
    mailstream_low_free(plain);
    mailstream_set_low(stream, tls);
    return 0;
}
/* Per-read/write timeout of a stream's current layer. */
static inline void cetpan_stream_set_timeout(mailstream *stream, time_t seconds) {
    mailstream_low_set_timeout(mailstream_get_low(stream), seconds);
}
/* Bytes already read from the socket and not parsed yet (poll() on the fd cannot see them). */
static inline size_t cetpan_stream_buffered(mailstream *stream) { return stream == NULL ? 0 : stream->read_buffer_len; }

/* Verifies the server's certificate chain (as sent in the handshake) against cafile (PEM; NULL = the
 * system store) and hostname (DNS name or IP address), for TLS server use. Returns 0 when it holds, else -1
 * with the reason in err. */
static inline int cetpan_verify_peer(mailstream *stream, const char *cafile, const char *hostname, char *err, size_t errlen) {
    carray *chain = mailstream_get_certificate_chain(stream);
    gnutls_x509_crt_t certs[16];
    unsigned int count = 0, i, status = 0;
    gnutls_x509_trust_list_t trust = NULL;
    gnutls_typed_vdata_st data[2];
    gnutls_datum_t text = { NULL, 0 };
    int rc, result = -1;
    if (chain == NULL || carray_count(chain) == 0) {
        snprintf(err, errlen, "the server sent no certificate");
        goto done;
    }
    for (i = 0; i < carray_count(chain) && count < 16; i++) {
        MMAPString *der = (MMAPString *)carray_get(chain, i);
        gnutls_datum_t datum = { (unsigned char *)der->str, (unsigned int)der->len };
        if (gnutls_x509_crt_init(&certs[count]) < 0) break;
        if (gnutls_x509_crt_import(certs[count], &datum, GNUTLS_X509_FMT_DER) < 0) {
            gnutls_x509_crt_deinit(certs[count]);
            snprintf(err, errlen, "the server's certificate %u cannot be parsed", i);
            goto done;
        }
        count++;
    }
    if (gnutls_x509_trust_list_init(&trust, 0) < 0) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    rc = cafile != NULL ? gnutls_x509_trust_list_add_trust_file(trust, cafile, NULL, GNUTLS_X509_FMT_PEM, 0, 0)
                        : gnutls_x509_trust_list_add_system_trust(trust, 0, 0);
    if (rc <= 0) {
        snprintf(err, errlen, "no trusted CA certificate could be loaded from %s%s%s", cafile ? cafile : "the system store",
                 rc < 0 ? ": " : "", rc < 0 ? gnutls_strerror(rc) : "");
        goto done;
    }
    data[0].type = GNUTLS_DT_DNS_HOSTNAME;
    data[0].data = (unsigned char *)hostname;
    data[0].size = 0;
    data[1].type = GNUTLS_DT_KEY_PURPOSE_OID;
    data[1].data = (unsigned char *)GNUTLS_KP_TLS_WWW_SERVER;
    data[1].size = 0;
    rc = gnutls_x509_trust_list_verify_crt2(trust, certs, count, data, 2, 0, &status, NULL);
    if (rc < 0) {
        snprintf(err, errlen, "certificate verification failed: %s", gnutls_strerror(rc));
        goto done;
    }
    if (status != 0) {
        if (gnutls_certificate_verification_status_print(status, GNUTLS_CRT_X509, &text, 0) == 0 && text.data != NULL) {
            snprintf(err, errlen, "%s", (const char *)text.data);
            gnutls_free(text.data);
        } else {
            snprintf(err, errlen, "the certificate is not trusted (status 0x%x)", status);
        }
        goto done;
    }
    result = 0;
done:
    if (trust != NULL) gnutls_x509_trust_list_deinit(trust, 1);
    for (i = 0; i < count; i++) gnutls_x509_crt_deinit(certs[i]);
    if (chain != NULL) mailstream_certificate_chain_free(chain);
    return result;
}

/* MARK: Field access */
/* The name of a capability ("IDLE"), or for an AUTH= one its mechanism with is_auth set. */
static inline const char *cetpan_capability_name(struct mailimap_capability *cap, int *is_auth) {
    *is_auth = cap->cap_type == MAILIMAP_CAPABILITY_AUTH_TYPE;
    return *is_auth ? cap->cap_data.cap_auth_type : cap->cap_data.cap_name;
}

/* What a FETCH response carries about one message: UID, RFC822.SIZE and a BODY[] section.
 * has_* tell which were present; body points into the response (valid until it is freed). */
static inline void cetpan_msg_att_info(struct mailimap_msg_att *att, uint32_t *uid, int *has_uid, uint32_t *size,
                                       int *has_size, const char **body, size_t *body_len, int *has_body) {
    clistiter *iter;
    *has_uid = *has_size = *has_body = 0;
    *uid = *size = 0;
    *body = NULL;
    *body_len = 0;
    for (iter = clist_begin(att->att_list); iter != NULL; iter = clist_next(iter)) {
        struct mailimap_msg_att_item *item = (struct mailimap_msg_att_item *)clist_content(iter);
        struct mailimap_msg_att_static *st;
        if (item->att_type != MAILIMAP_MSG_ATT_ITEM_STATIC || item->att_data.att_static == NULL) continue;
        st = item->att_data.att_static;
        switch (st->att_type) {
        case MAILIMAP_MSG_ATT_UID: *uid = st->att_data.att_uid; *has_uid = 1; break;
        case MAILIMAP_MSG_ATT_RFC822_SIZE: *size = st->att_data.att_rfc822_size; *has_size = 1; break;
        case MAILIMAP_MSG_ATT_BODY_SECTION:
            if (st->att_data.att_body_section != NULL) {
                *body = st->att_data.att_body_section->sec_body_part;
                *body_len = st->att_data.att_body_section->sec_length;
                *has_body = 1;
            }
            break;
        default: break;
        }
    }
}

/* A search key with no argument (UNSEEN, UNDELETED, …). */
static inline struct mailimap_search_key *cetpan_search_key_simple(int type) {
    return mailimap_search_key_new(type, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL,
                                   NULL, 0, NULL, NULL, NULL, NULL, NULL, NULL, 0, NULL, NULL, NULL);
}

/* The state the last tagged response left behind. */
static inline int cetpan_response_trycreate(mailimap *imap) {
    return imap->imap_response_info != NULL && imap->imap_response_info->rsp_trycreate;
}
static inline int cetpan_response_expunged_count(mailimap *imap) {
    return imap->imap_response_info == NULL ? 0 : cetpan_clist_count(imap->imap_response_info->rsp_expunged);
}
static inline uint32_t cetpan_selection_exists(mailimap *imap) {
    return imap->imap_selection_info == NULL ? 0 : imap->imap_selection_info->sel_exists;
}
static inline uint32_t cetpan_selection_recent(mailimap *imap) {
    return imap->imap_selection_info == NULL ? 0 : imap->imap_selection_info->sel_recent;
}
static inline uint32_t cetpan_selection_uidvalidity(mailimap *imap) {
    return imap->imap_selection_info == NULL ? 0 : imap->imap_selection_info->sel_uidvalidity;
}
static inline uint32_t cetpan_selection_uidnext(mailimap *imap) {
    return imap->imap_selection_info == NULL ? 0 : imap->imap_selection_info->sel_uidnext;
}
#endif
