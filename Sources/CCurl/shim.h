/* CCurl shim: libcurl's variadic setopt/getinfo calls wrapped in typed functions,
 * because Swift cannot call C variadic functions. */
#ifndef CHORUS_CCURL_SHIM_H
#define CHORUS_CCURL_SHIM_H
#include <curl/curl.h>

static inline CURLcode ccurl_easy_setopt_long(CURL *h, CURLoption o, long v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_ptr(CURL *h, CURLoption o, void *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_string(CURL *h, CURLoption o, const char *v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_setopt_off(CURL *h, CURLoption o, curl_off_t v) { return curl_easy_setopt(h, o, v); }
typedef size_t (*ccurl_data_cb)(char *ptr, size_t size, size_t nmemb, void *userdata);
static inline CURLcode ccurl_easy_setopt_datacb(CURL *h, CURLoption o, ccurl_data_cb v) { return curl_easy_setopt(h, o, v); }
static inline CURLcode ccurl_easy_getinfo_long(CURL *h, CURLINFO i, long *v) { return curl_easy_getinfo(h, i, v); }
static inline CURLcode ccurl_easy_getinfo_ptr(CURL *h, CURLINFO i, void **v) { return curl_easy_getinfo(h, i, v); }

typedef int (*ccurl_socket_cb)(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp);
typedef int (*ccurl_timer_cb)(CURLM *multi, long timeout_ms, void *userp);
static inline CURLMcode ccurl_multi_setopt_socketcb(CURLM *m, ccurl_socket_cb cb) { return curl_multi_setopt(m, CURLMOPT_SOCKETFUNCTION, cb); }
static inline CURLMcode ccurl_multi_setopt_timercb(CURLM *m, ccurl_timer_cb cb) { return curl_multi_setopt(m, CURLMOPT_TIMERFUNCTION, cb); }
static inline CURLMcode ccurl_multi_setopt_ptr(CURLM *m, CURLMoption o, void *v) { return curl_multi_setopt(m, o, v); }
static inline CURLMcode ccurl_multi_setopt_long(CURLM *m, CURLMoption o, long v) { return curl_multi_setopt(m, o, v); }

static inline CURL *ccurl_msg_easy(CURLMsg *m) { return m->easy_handle; }
static inline CURLcode ccurl_msg_result(CURLMsg *m) { return m->data.result; }
static inline int ccurl_msg_is_done(CURLMsg *m) { return m->msg == CURLMSG_DONE; }

static inline int ccurl_poll_in(void) { return CURL_POLL_IN; }
static inline int ccurl_poll_out(void) { return CURL_POLL_OUT; }
static inline int ccurl_poll_inout(void) { return CURL_POLL_INOUT; }
static inline int ccurl_poll_remove(void) { return CURL_POLL_REMOVE; }
static inline curl_socket_t ccurl_socket_timeout(void) { return CURL_SOCKET_TIMEOUT; }
static inline int ccurl_cselect_in(void) { return CURL_CSELECT_IN; }
static inline int ccurl_cselect_out(void) { return CURL_CSELECT_OUT; }
static inline int ccurl_cselect_err(void) { return CURL_CSELECT_ERR; }

/* curl_global_init(CURL_GLOBAL_DEFAULT): the flag is a macro Swift cannot import. */
static inline CURLcode ccurl_global_init_default(void) { return curl_global_init(CURL_GLOBAL_DEFAULT); }
/* Size of the buffer CURLOPT_ERRORBUFFER expects. */
static inline size_t ccurl_error_size(void) { return CURL_ERROR_SIZE; }

/* SMTP submission (EmailTransport.SMTPSubmitter). */
typedef int (*ccurl_debug_cb)(CURL *handle, curl_infotype type, char *data, size_t size, void *userptr);
static inline CURLcode ccurl_easy_setopt_debugcb(CURL *h, ccurl_debug_cb v) { return curl_easy_setopt(h, CURLOPT_DEBUGFUNCTION, v); }
static inline CURLcode ccurl_easy_setopt_slist(CURL *h, CURLoption o, struct curl_slist *v) { return curl_easy_setopt(h, o, v); }
static inline long ccurl_usessl_all(void) { return (long)CURLUSESSL_ALL; }
static inline long ccurl_usessl_none(void) { return (long)CURLUSESSL_NONE; }
#endif
