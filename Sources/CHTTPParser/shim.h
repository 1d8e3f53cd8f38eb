/* CHTTPParser shim: Node's http_parser (Debian libhttp-parser-dev) and accessors for its bitfields. */
#ifndef CHORUS_CHTTPPARSER_SHIM_H
#define CHORUS_CHTTPPARSER_SHIM_H
#include <http_parser.h>
static inline unsigned int chttp_method(const http_parser *p) { return p->method; }
static inline unsigned int chttp_errno(const http_parser *p) { return p->http_errno; }
static inline void chttp_clear_errno(http_parser *p) { p->http_errno = 0; }
static inline unsigned int chttp_upgrade(const http_parser *p) { return p->upgrade; }
#endif
