/*
 * batch_notify: a hookrouter plugin for the WASI command-module ABI, in plain C.
 *
 * On `batch_created` it emits a `batch_notification` event summarising the batch,
 * and, when the config entry NOTIFY_URL is set, forwards a Slack-style message
 * `{"text": "..."}` to it. Other event types produce no actions.
 *
 * ABI: the event arrives on stdin as one JSON object
 *   {"id","type","source","received_at","attempt","headers":{...},"data":<body>}
 * config entries are environment variables; each stdout line is one action; exit
 * status 0 is success.
 *
 * JSON handling: a small validating scanner that finds keys in objects and copies
 * values through as raw JSON text, so nothing is ever re-escaped by hand.
 *
 * Build: clang-19 --target=wasm32-wasi --sysroot=/usr -nostdlibinc \
 *          -isystem /usr/include/wasm32-wasi -O2 -o batch_notify.wasm batch_notify.c
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DEPTH 64

static const char *ws(const char *p) {
    while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t') p++;
    return p;
}

/* Returns the end of the JSON value at p, or NULL if it is malformed. */
static const char *skip(const char *p, int depth) {
    if (depth > MAX_DEPTH) return NULL;
    p = ws(p);
    if (*p == '"') {
        for (p++; *p && *p != '"'; p++) {
            if (*p == '\\' && !*++p) return NULL;
        }
        return *p ? p + 1 : NULL;
    }
    if (*p == '{' || *p == '[') {
        char close = *p == '{' ? '}' : ']';
        p = ws(p + 1);
        if (*p == close) return p + 1;
        for (;;) {
            if (close == '}') {
                if (*p != '"' || !(p = skip(p, depth + 1))) return NULL;
                p = ws(p);
                if (*p++ != ':') return NULL;
            }
            if (!(p = skip(p, depth + 1))) return NULL;
            p = ws(p);
            if (*p == close) return p + 1;
            if (*p++ != ',') return NULL;
            p = ws(p);
        }
    }
    const char *start = p;
    while (*p && strchr("+-.0123456789eEtrufalsn", *p)) p++;
    return p > start ? p : NULL;
}

/* Finds `key` in the object at obj; returns its raw value and sets *len, or NULL. */
static const char *get(const char *obj, const char *key, size_t *len) {
    if (!obj) return NULL;
    const char *p = ws(obj);
    if (*p != '{') return NULL;
    p = ws(p + 1);
    size_t klen = strlen(key);
    while (*p == '"') {
        const char *k = p + 1, *kend = skip(p, 0);
        if (!kend) return NULL;
        p = ws(kend);
        if (*p++ != ':') return NULL;
        p = ws(p);
        const char *vend = skip(p, 0);
        if (!vend) return NULL;
        if ((size_t)(kend - 1 - k) == klen && memcmp(k, key, klen) == 0) {
            *len = (size_t)(vend - p);
            return p;
        }
        p = ws(vend);
        if (*p != ',') break;
        p = ws(p + 1);
    }
    return NULL;
}

static int is_string(const char *v, size_t len) { return v && len >= 2 && v[0] == '"'; }

/* Prints s as the inside of a JSON string (config values come from the environment). */
static void put_escaped(const char *s) {
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
}

static char *read_all(FILE *in) {
    size_t cap = 4096, len = 0, n;
    char *buf = malloc(cap);
    while (buf && (n = fread(buf + len, 1, cap - len - 1, in)) > 0) {
        len += n;
        if (cap - len < 2) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) { free(buf); return NULL; }
            buf = bigger;
        }
    }
    if (buf) buf[len] = '\0';
    return buf;
}

int main(void) {
    char *doc = read_all(stdin);
    if (!doc || !skip(doc, 0)) {
        fprintf(stderr, "batch_notify: stdin is not a JSON document\n");
        return 1;
    }
    size_t type_len = 0, id_len = 0, data_len = 0, bid_len = 0, src_len = 0;
    const char *type = get(doc, "type", &type_len);
    if (!type || type_len != 15 || memcmp(type, "\"batch_created\"", 15) != 0) {
        return 0; /* not ours: no actions */
    }
    const char *id = get(doc, "id", &id_len);
    const char *src = get(doc, "source", &src_len);
    const char *data = get(doc, "data", &data_len);
    /* An Optum envelope names the batch in its own `id`; a bare body may use `batch_id`. */
    const char *batch = get(data, "id", &bid_len);
    if (!is_string(batch, bid_len)) batch = get(data, "batch_id", &bid_len);
    if (!is_string(batch, bid_len)) {
        fprintf(stderr, "batch_notify: batch_created event without a batch id\n");
        return 2;
    }
    printf("{\"action\":\"emit\",\"type\":\"batch_notification\",\"data\":"
           "{\"batch_id\":%.*s,\"event_id\":%.*s,\"source\":%.*s}}\n",
           (int)bid_len, batch, (int)id_len, id, (int)src_len, src);
    const char *url = getenv("NOTIFY_URL");
    if (url && *url) {
        const char *channel = getenv("CHANNEL");
        /* The batch id token is a JSON string: its inside can be pasted into another. */
        printf("{\"action\":\"forward\",\"url\":\"");
        put_escaped(url);
        printf("\",\"headers\":{\"content-type\":\"application/json\"},"
               "\"body\":{\"text\":\"Batch %.*s was created\"",
               (int)bid_len - 2, batch + 1);
        if (channel && *channel) {
            printf(",\"channel\":\"");
            put_escaped(channel);
            printf("\"");
        }
        printf("}}\n");
    }
    fprintf(stderr, "batch_notify: batch %.*s announced\n", (int)bid_len, batch);
    return 0;
}
