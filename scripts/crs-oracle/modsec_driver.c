/*
 * The differential oracle for edge-auth's CRS engine: ModSecurity 3 itself, over the same rules and
 * the same requests.
 *
 * Usage: modsec_driver <rules.conf>... < requests > verdicts
 *
 * Requests on stdin, one after another (bytes, so any payload fits):
 *   <method> <uri> <protocol>\n
 *   <header count>\n
 *   <name>: <value>\n          (that many)
 *   <body length>\n<body bytes>\n
 * One verdict per request on stdout:
 *   <index>\t<status: 0 when passed>\t<logged rule ids, comma-separated>\t<nanoseconds>\t<last message>\n
 * where the time is that of the transaction: created, request line, headers, body, intervention.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <modsecurity/intervention.h>
#include <modsecurity/modsecurity.h>
#include <modsecurity/rules_set.h>
#include <modsecurity/transaction.h>

static char ids[65536];
static char last_message[4096];

/* ModSecurity logs each rule match that logs; the text carries `[id "942100"]` and `[msg "..."]`. */
static void on_log(void *data, const void *message) {
    (void)data;
    const char *text = (const char *)message;
    const char *id = strstr(text, "[id \"");
    if (id != NULL) {
        id += 5;
        size_t len = strcspn(id, "\"");
        size_t used = strlen(ids);
        if (used + len + 2 < sizeof(ids)) {
            if (used > 0) strcat(ids, ",");
            strncat(ids, id, len);
        }
    }
    const char *msg = strstr(text, "[msg \"");
    if (msg != NULL) {
        msg += 6;
        size_t len = strcspn(msg, "\"");
        if (len >= sizeof(last_message)) len = sizeof(last_message) - 1;
        memcpy(last_message, msg, len);
        last_message[len] = '\0';
    }
}

static long long now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (long long)t.tv_sec * 1000000000LL + t.tv_nsec;
}

static int read_line(char *buf, size_t size) {
    if (fgets(buf, (int)size, stdin) == NULL) return 0;
    buf[strcspn(buf, "\n")] = '\0';
    return 1;
}

int main(int argc, char **argv) {
    ModSecurity *modsec = msc_init();
    msc_set_log_cb(modsec, on_log);
    RulesSet *rules = msc_create_rules_set();
    const char *error = NULL;
    for (int i = 1; i < argc; i++) {
        if (msc_rules_add_file(rules, argv[i], &error) < 0) {
            fprintf(stderr, "%s: %s\n", argv[i], error);
            return 2;
        }
    }
    static char line[1 << 20];
    for (long index = 0; read_line(line, sizeof(line)); index++) {
        char method[64], uri[(1 << 20) - 128], protocol[32];
        if (sscanf(line, "%63s %1048447s %31s", method, uri, protocol) != 3) {
            fprintf(stderr, "request %ld: bad request line\n", index);
            return 2;
        }
        ids[0] = '\0';
        last_message[0] = '\0';
        if (!read_line(line, sizeof(line))) return 2;
        long headers = strtol(line, NULL, 10);
        if (headers < 0 || headers > 256) return 2;
        char *names[256], *values[256];
        for (long h = 0; h < headers; h++) {
            if (!read_line(line, sizeof(line))) return 2;
            char *colon = strstr(line, ": ");
            if (colon == NULL) return 2;
            *colon = '\0';
            names[h] = strdup(line);
            values[h] = strdup(colon + 2);
            if (names[h] == NULL || values[h] == NULL) return 2;
        }
        if (!read_line(line, sizeof(line))) return 2;
        size_t length = (size_t)strtoul(line, NULL, 10);
        unsigned char *body = malloc(length + 1);
        if (body == NULL || fread(body, 1, length, stdin) != length) return 2;
        fgetc(stdin); /* the newline after the body */

        long long started = now_ns();
        Transaction *tx = msc_new_transaction(modsec, rules, NULL);
        msc_process_connection(tx, "127.0.0.1", 40000, "127.0.0.1", 80);
        const char *version = strncmp(protocol, "HTTP/", 5) == 0 ? protocol + 5 : protocol;
        msc_process_uri(tx, uri, method, version);
        for (long h = 0; h < headers; h++) {
            msc_add_request_header(tx, (const unsigned char *)names[h], (const unsigned char *)values[h]);
        }
        msc_process_request_headers(tx);
        ModSecurityIntervention it = {200, 0, NULL, NULL, 0};
        if (msc_intervention(tx, &it) == 0) {
            msc_append_request_body(tx, body, length);
            msc_process_request_body(tx);
            msc_intervention(tx, &it);
        }
        long long elapsed = now_ns() - started;
        /* The rule that disrupted is reported in the intervention, not through the log callback. */
        if (it.disruptive && it.log != NULL) on_log(NULL, it.log);
        printf("%ld\t%d\t%s\t%lld\t%s\n", index, it.disruptive ? it.status : 0, ids, elapsed, last_message);
        free(it.log);
        free(it.url);
        free(body);
        for (long h = 0; h < headers; h++) {
            free(names[h]);
            free(values[h]);
        }
        msc_process_logging(tx);
        msc_transaction_cleanup(tx);
    }
    msc_rules_cleanup(rules);
    msc_cleanup(modsec);
    return 0;
}
