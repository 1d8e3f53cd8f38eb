/* CGMime shim: GMime 3 calls Swift cannot make directly (GObject casts and type
 * checks are macros, GByteArray/GString field access, NULL-tolerant unref)
 * wrapped in cgmime_* functions. */
#ifndef CHORUS_CGMIME_SHIM_H
#define CHORUS_CGMIME_SHIM_H
#include <gmime/gmime.h>

/* Reference counting: g_object_unref that tolerates NULL. */
static inline void cgmime_unref(gpointer object) { if (object != NULL) g_object_unref(object); }

/* Type checks on a parsed MIME tree (GMIME_IS_* are macros). */
static inline gboolean cgmime_is_multipart(GMimeObject *o) { return GMIME_IS_MULTIPART(o); }
static inline gboolean cgmime_is_message_part(GMimeObject *o) { return GMIME_IS_MESSAGE_PART(o); }
static inline gboolean cgmime_is_part(GMimeObject *o) { return GMIME_IS_PART(o); }

/* Casts (GMIME_* are checked-cast macros). */
static inline GMimeObject *cgmime_object(gpointer p) { return GMIME_OBJECT(p); }
static inline GMimeMultipart *cgmime_multipart(GMimeObject *o) { return GMIME_MULTIPART(o); }
static inline GMimePart *cgmime_part(GMimeObject *o) { return GMIME_PART(o); }
static inline GMimeMessagePart *cgmime_message_part(GMimeObject *o) { return GMIME_MESSAGE_PART(o); }
static inline GMimeStreamMem *cgmime_stream_mem(GMimeStream *s) { return GMIME_STREAM_MEM(s); }
static inline GMimeStreamFilter *cgmime_stream_filter(GMimeStream *s) { return GMIME_STREAM_FILTER(s); }

/* Addresses: a list entry is either a mailbox or a group. */
static inline gboolean cgmime_address_is_mailbox(InternetAddress *a) { return INTERNET_ADDRESS_IS_MAILBOX(a); }
static inline gboolean cgmime_address_is_group(InternetAddress *a) { return INTERNET_ADDRESS_IS_GROUP(a); }
static inline InternetAddressMailbox *cgmime_mailbox(InternetAddress *a) { return INTERNET_ADDRESS_MAILBOX(a); }
static inline InternetAddressGroup *cgmime_group(InternetAddress *a) { return INTERNET_ADDRESS_GROUP(a); }

/* The bytes held by a memory stream (borrowed; valid while the stream lives). */
static inline const guint8 *cgmime_stream_mem_data(GMimeStream *s) {
    GByteArray *a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
    return a != NULL ? a->data : NULL;
}
static inline size_t cgmime_stream_mem_length(GMimeStream *s) {
    GByteArray *a = g_mime_stream_mem_get_byte_array(GMIME_STREAM_MEM(s));
    return a != NULL ? (size_t)a->len : 0;
}

/* A charset filter (from_charset -> to_charset) pushed onto a filter stream; 0 when iconv
 * does not know the charset. */
static inline int cgmime_stream_filter_add_charset(GMimeStream *filtered, const char *from, const char *to) {
    GMimeFilter *f = g_mime_filter_charset_new(from, to);
    if (f == NULL) return 0;
    g_mime_stream_filter_add(GMIME_STREAM_FILTER(filtered), f);
    g_object_unref(f);
    return 1;
}

/* Fallback charsets for undeclared 8-bit text (NULL-terminated array of constants). */
static inline void cgmime_parser_options_set_fallback_utf8_cp1252(GMimeParserOptions *o) {
    static const char *charsets[] = { "UTF-8", "windows-1252", NULL };
    g_mime_parser_options_set_fallback_charsets(o, charsets);
}

/* The parameter object of a Content-Type / Content-Disposition (to force its charset). */
static inline void cgmime_part_set_filename_charset(GMimePart *part, const char *charset) {
    GMimeContentDisposition *d = g_mime_object_get_content_disposition(GMIME_OBJECT(part));
    if (d != NULL) {
        GMimeParam *p = g_mime_param_list_get_parameter(g_mime_content_disposition_get_parameters(d), "filename");
        if (p != NULL) g_mime_param_set_charset(p, charset);
    }
    GMimeContentType *t = g_mime_object_get_content_type(GMIME_OBJECT(part));
    if (t != NULL) {
        GMimeParam *p = g_mime_param_list_get_parameter(g_mime_content_type_get_parameters(t), "name");
        if (p != NULL) g_mime_param_set_charset(p, charset);
    }
}

/* GDateTime helpers (GDateTime is opaque to Swift). */
static inline gint64 cgmime_date_to_unix(GDateTime *d) { return g_date_time_to_unix(d); }
static inline GDateTime *cgmime_date_new_utc(gint64 seconds) { return g_date_time_new_from_unix_utc(seconds); }
static inline void cgmime_date_unref(GDateTime *d) { if (d != NULL) g_date_time_unref(d); }

/* g_free, named for the shim (strings GMime hands over with transfer full). */
static inline void cgmime_free(gpointer p) { g_free(p); }
#endif
