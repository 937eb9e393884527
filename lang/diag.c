/* diag.c — source files and clang-style diagnostics.
 *
 *   model.nn:3:10: error: unknown layer 'dense2'; did you mean 'dense'?
 *       h1 = dense2(x, 512)
 *            ^~~~~~
 *
 * The echoed line never sends raw control bytes or invalid UTF-8 to the terminal: they are
 * shown as '?'. Tabs are expanded to 8 columns so the caret lines up.
 */
#if !defined(_GNU_SOURCE) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200809L /* strdup, fileno, isatty */
#endif
#include "ast.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

enum {
    SOURCE_MAX_BYTES = 64 << 20, /* larger .nn files are surely a mistake */
    ECHO_MAX_COLUMNS = 200,      /* longer lines are shown as a window around the caret */
    ECHO_WINDOW_BEFORE = 80,     /* columns of context kept before the caret in a window */
    ECHO_WINDOW_COLUMNS = 160,   /* columns shown in a window */
    TAB_WIDTH = 8,
};

/* ---------------------------------------------------------------- sources */

static void source_index_lines(Source *s) {
    int n = 1;
    for (size_t i = 0; i < s->len; i++) n += s->text[i] == '\n';
    s->line_start = malloc((size_t)n * sizeof *s->line_start);
    if (!s->line_start) {
        fputs("nnc: fatal: out of memory\n", stderr);
        abort();
    }
    s->line_start[0] = 0;
    int line = 1;
    for (size_t i = 0; i < s->len; i++)
        if (s->text[i] == '\n') s->line_start[line++] = i + 1;
    s->nlines = n;
}

/* Takes ownership of text (malloc'd, len + 1 bytes, NUL-terminated). */
static Source *source_adopt(const char *path, char *text, size_t len) {
    Source *s = calloc(1, sizeof *s);
    char *path_copy = strdup(path ? path : "<input>");
    if (!s || !path_copy) {
        fputs("nnc: fatal: out of memory\n", stderr);
        abort();
    }
    s->path = path_copy;
    s->text = text;
    s->len = len;
    source_index_lines(s);
    return s;
}

Source *source_from_string(const char *path, const char *text, size_t len) {
    char *copy = malloc(len + 1);
    if (!copy) {
        fputs("nnc: fatal: out of memory\n", stderr);
        abort();
    }
    if (len) memcpy(copy, text, len);
    copy[len] = 0;
    return source_adopt(path, copy, len);
}

static Source *read_failed(const char *path, const char *reason, FILE *f, char *buf) {
    fprintf(stderr, "nnc: error: cannot read '%s': %s\n", path, reason);
    if (f) fclose(f);
    free(buf);
    return NULL;
}

/* Reads in chunks rather than trusting st_size, so pipes and /dev/stdin work too. */
Source *source_read(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return read_failed(path, strerror(errno), NULL, NULL);
    struct stat st;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) return read_failed(path, "is a directory", f, NULL);
        if (S_ISREG(st.st_mode) && st.st_size > SOURCE_MAX_BYTES) {
            char reason[128];
            snprintf(reason, sizeof reason, "file is too large (%lld bytes; the limit is %d MB)",
                     (long long)st.st_size, SOURCE_MAX_BYTES >> 20);
            return read_failed(path, reason, f, NULL);
        }
    }
    size_t cap = 4096, len = 0;
    char *buf = malloc(cap);
    if (!buf) return read_failed(path, "out of memory", f, NULL);
    for (;;) {
        if (len + 1 >= cap) {
            if (cap > SOURCE_MAX_BYTES) {
                char reason[128];
                snprintf(reason, sizeof reason, "file is too large (the limit is %d MB)",
                         SOURCE_MAX_BYTES >> 20);
                return read_failed(path, reason, f, buf);
            }
            char *grown = realloc(buf, cap * 2);
            if (!grown) return read_failed(path, "out of memory", f, buf);
            buf = grown;
            cap *= 2;
        }
        size_t n = fread(buf + len, 1, cap - 1 - len, f);
        len += n;
        if (n == 0) break;
    }
    if (ferror(f)) return read_failed(path, strerror(errno ? errno : EIO), f, buf);
    if (len > SOURCE_MAX_BYTES) {
        char reason[128];
        snprintf(reason, sizeof reason, "file is too large (%zu bytes; the limit is %d MB)", len,
                 SOURCE_MAX_BYTES >> 20);
        return read_failed(path, reason, f, buf);
    }
    fclose(f);
    buf[len] = 0;
    return source_adopt(path, buf, len);
}

void source_free(Source *s) {
    if (!s) return;
    free((char *)s->path);
    free(s->text);
    free(s->line_start);
    free(s);
}

/* ---------------------------------------------------------------- UTF-8 */

int utf8_decode(const char *s, size_t n, uint32_t *cp) {
    const unsigned char *p = (const unsigned char *)s;
    if (n == 0) return 0;
    unsigned c = p[0];
    int len;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    } else if ((c & 0xe0) == 0xc0) {
        len = 2, v = c & 0x1f, min = 0x80;
    } else if ((c & 0xf0) == 0xe0) {
        len = 3, v = c & 0x0f, min = 0x800;
    } else if ((c & 0xf8) == 0xf0) {
        len = 4, v = c & 0x07, min = 0x10000;
    } else {
        return 0;
    }
    if ((size_t)len > n) return 0;
    for (int i = 1; i < len; i++) {
        if ((p[i] & 0xc0) != 0x80) return 0;
        v = v << 6 | (p[i] & 0x3f);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff)) return 0;
    *cp = v;
    return len;
}

/* Code points echoed as they are: printable, and not one of the invisible controls that
 * can reorder or hide text on a terminal (C1 controls, bidi overrides, zero-width marks). */
static bool echo_safe(uint32_t cp) {
    if (cp < 0x20 || (cp >= 0x7f && cp < 0xa0)) return false;
    if (cp == 0xad || (cp >= 0x200b && cp <= 0x200f) || (cp >= 0x2028 && cp <= 0x202e) ||
        (cp >= 0x2060 && cp <= 0x206f) || cp == 0xfeff || (cp >= 0xfff9 && cp <= 0xfffb))
        return false;
    return true;
}

/* ---------------------------------------------------------------- diagnostics */

/* A growable byte buffer for one output line. */
typedef struct Buf {
    char *data;
    size_t len, cap;
} Buf;

static void buf_put(Buf *b, const char *s, size_t n) {
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (b->len + n + 1 > cap) cap *= 2;
        char *grown = realloc(b->data, cap);
        if (!grown) {
            fputs("nnc: fatal: out of memory\n", stderr);
            abort();
        }
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, s, n);
    b->len += n;
    b->data[b->len] = 0;
}

static void buf_repeat(Buf *b, char c, int n) {
    for (int i = 0; i < n; i++) buf_put(b, &c, 1);
}

#define COLOR_RESET "\033[0m"
#define COLOR_BOLD "\033[1m"
#define COLOR_RED "\033[1;31m"
#define COLOR_MAGENTA "\033[1;35m"
#define COLOR_NOTE "\033[1;36m"
#define COLOR_GREEN "\033[1;32m"

void diag_init(Diag *d, const Source *src, FILE *out) {
    memset(d, 0, sizeof *d);
    d->src = src;
    d->out = out ? out : stderr;
    const char *no_color = getenv("NO_COLOR");
    d->color = isatty(fileno(d->out)) && !(no_color && *no_color);
}

static int echo_width(unsigned char c) {
    return c == '\t' ? TAB_WIDTH : (c & 0xc0) == 0x80 ? 0 : 1;
}

/* Prints the source line of loc, then the caret line. Columns are bytes; the display
 * column of each byte accounts for tabs and multi-byte characters. */
static void echo_source_line(Diag *d, SrcLoc loc) {
    const Source *s = d->src;
    if (!s || !s->text || loc.first_line < 1 || loc.first_line > s->nlines) return;
    const unsigned char *text = (const unsigned char *)s->text;
    size_t ls = s->line_start[loc.first_line - 1];
    size_t le = loc.first_line < s->nlines ? s->line_start[loc.first_line] - 1 : s->len;
    if (le > ls && text[le - 1] == '\r') le--;
    size_t line_len = le - ls;

    /* [caret, end) is the underlined byte range within the line */
    size_t caret = loc.first_column > 1 ? (size_t)loc.first_column - 1 : 0;
    if (caret > line_len) caret = line_len;
    size_t end = line_len;
    if (loc.last_line == loc.first_line && loc.last_column >= loc.first_column)
        end = (size_t)loc.last_column;
    if (end > line_len) end = line_len;
    if (end <= caret) end = caret + 1;

    /* [ws, we) is the shown byte range: the whole line, or a window of about
     * ECHO_WINDOW_COLUMNS columns around the caret when the line is wider than
     * ECHO_MAX_COLUMNS (widths estimated: a tab as 8, a UTF-8 continuation byte as 0). */
    size_t ws = 0, we = line_len;
    int width = 0;
    for (size_t i = 0; i < line_len && width <= ECHO_MAX_COLUMNS; i++)
        width += echo_width(text[ls + i]);
    if (width > ECHO_MAX_COLUMNS) {
        int before = 0, shown = 0;
        ws = caret;
        while (ws > 0 && before + echo_width(text[ls + ws - 1]) <= ECHO_WINDOW_BEFORE)
            before += echo_width(text[ls + --ws]);
        while (ws < caret && (text[ls + ws] & 0xc0) == 0x80) ws++; /* start on a character */
        we = ws;
        while (we < line_len && (we <= caret || shown + echo_width(text[ls + we]) <= ECHO_WINDOW_COLUMNS))
            shown += echo_width(text[ls + we++]);
        while (we < line_len && (text[ls + we] & 0xc0) == 0x80) we++;
    }

    Buf line = {0}, mark = {0};
    int col = 0; /* display column of the next character */
    if (ws > 0) {
        buf_put(&line, "...", 3);
        buf_repeat(&mark, ' ', 3);
        col = 3;
    }
    for (size_t i = ws; i < we;) {
        const unsigned char *p = text + ls + i;
        int width = 1, nbytes = 1;
        uint32_t cp = 0;
        if (*p == '\t') {
            width = TAB_WIDTH - col % TAB_WIDTH;
            buf_repeat(&line, ' ', width);
        } else if (*p >= 0x20 && *p < 0x7f) {
            buf_put(&line, (const char *)p, 1);
        } else if (*p >= 0x80 && (nbytes = utf8_decode((const char *)p, we - i, &cp)) > 0 && echo_safe(cp)) {
            buf_put(&line, (const char *)p, (size_t)nbytes);
        } else if (i == 0 && loc.first_line == 1 && nbytes == 3 && cp == 0xfeff) {
            width = 0; /* a byte-order mark at the start of the file: invisible */
        } else {
            if (nbytes < 1) nbytes = 1;
            width = 1;
            buf_put(&line, "?", 1);
        }
        if (i < end) {
            if (i == caret) {
                buf_put(&mark, "^", 1);
                buf_repeat(&mark, '~', width - 1);
            } else if (i > caret) {
                buf_repeat(&mark, '~', width);
            } else {
                buf_repeat(&mark, ' ', width);
            }
        }
        col += width;
        i += (size_t)nbytes;
    }
    if (caret >= we) {
        /* the caret sits just past the shown text (end of line, or past the window) */
        if (caret == line_len) buf_put(&mark, "^", 1);
    }
    if (we < line_len) buf_put(&line, "...", 3);

    fprintf(d->out, "%s\n", line.data ? line.data : "");
    if (d->color) fprintf(d->out, COLOR_GREEN "%s" COLOR_RESET "\n", mark.data ? mark.data : "");
    else fprintf(d->out, "%s\n", mark.data ? mark.data : "");
    free(line.data);
    free(mark.data);
}

/* Messages may quote names from the source: keep them terminal-safe as well. */
static void put_sanitized(FILE *out, const char *msg) {
    const unsigned char *p = (const unsigned char *)msg;
    size_t n = strlen(msg);
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = utf8_decode(msg + i, n - i, &cp);
        if (k > 0 && (cp == '\t' || echo_safe(cp))) {
            fwrite(p + i, 1, (size_t)k, out);
            i += (size_t)k;
        } else {
            fputc('?', out);
            i++;
        }
    }
}

typedef enum Severity { SEV_ERROR, SEV_WARNING, SEV_NOTE } Severity;

static void emit(Diag *d, Severity sev, SrcLoc loc, const char *fmt, va_list ap) {
    static const char *const labels[] = {"error", "warning", "note"};
    static const char *const colors[] = {COLOR_RED, COLOR_MAGENTA, COLOR_NOTE};
    char small[512];
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(small, sizeof small, fmt, ap);
    char *msg = small;
    if (n >= (int)sizeof small) {
        msg = malloc((size_t)n + 1);
        if (msg) vsnprintf(msg, (size_t)n + 1, fmt, ap2);
        else msg = small; /* truncated, but still a message */
    }
    va_end(ap2);

    FILE *out = d->out;
    const char *path = d->src && d->src->path ? d->src->path : "nnc";
    if (d->color) fputs(COLOR_BOLD, out);
    if (loc.first_line > 0) fprintf(out, "%s:%d:%d: ", path, loc.first_line, loc.first_column);
    else fprintf(out, "%s: ", path);
    if (d->color) fprintf(out, "%s%s:" COLOR_RESET COLOR_BOLD " ", colors[sev], labels[sev]);
    else fprintf(out, "%s: ", labels[sev]);
    put_sanitized(out, msg);
    if (d->color) fputs(COLOR_RESET, out);
    fputc('\n', out);
    if (loc.first_line > 0) echo_source_line(d, loc);
    fflush(out);
    if (msg != small) free(msg);
}

void diag_verror(Diag *d, SrcLoc loc, const char *fmt, va_list ap) {
    d->errors++;
    if (d->stopped) {
        d->dropped_last = true;
        return;
    }
    if (d->errors > DIAG_MAX_ERRORS) {
        if (d->color) fputs(COLOR_BOLD "nnc: " COLOR_RED "fatal:" COLOR_RESET COLOR_BOLD, d->out);
        else fputs("nnc: fatal:", d->out);
        fputs(" too many errors emitted, stopping now", d->out);
        if (d->color) fputs(COLOR_RESET, d->out);
        fputc('\n', d->out);
        fflush(d->out);
        d->stopped = true;
        d->dropped_last = true;
        return;
    }
    d->dropped_last = false;
    emit(d, SEV_ERROR, loc, fmt, ap);
}

bool diag_error(Diag *d, SrcLoc loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    diag_verror(d, loc, fmt, ap);
    va_end(ap);
    return !d->stopped;
}

void diag_warning(Diag *d, SrcLoc loc, const char *fmt, ...) {
    d->warnings++;
    d->dropped_last = d->stopped;
    if (d->stopped) return;
    va_list ap;
    va_start(ap, fmt);
    emit(d, SEV_WARNING, loc, fmt, ap);
    va_end(ap);
}

void diag_note(Diag *d, SrcLoc loc, const char *fmt, ...) {
    if (d->dropped_last) return;
    va_list ap;
    va_start(ap, fmt);
    emit(d, SEV_NOTE, loc, fmt, ap);
    va_end(ap);
}

/* ---------------------------------------------------------------- suggestions */

/* Levenshtein distance, or limit + 1 as soon as it is certain to exceed limit. */
/* Optimal string alignment distance: insertions, deletions, substitutions and swaps of two
 * adjacent characters each cost 1 ("trian" is one edit from "train"). Stops early once every
 * entry of a row exceeds limit. */
static size_t edit_distance(const char *a, size_t na, const char *b, size_t nb, size_t limit) {
    if ((na > nb ? na - nb : nb - na) > limit) return limit + 1;
    size_t stack_rows[3 * 64];
    size_t *mem = 3 * (nb + 1) <= 3 * 64 ? stack_rows : malloc(3 * (nb + 1) * sizeof *mem);
    if (!mem) return limit + 1;
    size_t *prev2 = mem, *prev = mem + (nb + 1), *row = mem + 2 * (nb + 1);
    for (size_t j = 0; j <= nb; j++) prev[j] = j;
    size_t result = limit + 1;
    for (size_t i = 1; i <= na; i++) {
        size_t best = row[0] = i;
        for (size_t j = 1; j <= nb; j++) {
            size_t v = prev[j - 1] + (a[i - 1] != b[j - 1]);
            if (prev[j] + 1 < v) v = prev[j] + 1;
            if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] && prev2[j - 2] + 1 < v)
                v = prev2[j - 2] + 1;
            row[j] = v;
            if (v < best) best = v;
        }
        if (best > limit) goto done;
        size_t *t = prev2;
        prev2 = prev;
        prev = row;
        row = t;
    }
    result = prev[nb];
done:
    if (mem != stack_rows) free(mem);
    return result;
}

const char *diag_closest(const char *name, const char *const *candidates, int n) {
    if (!name) return NULL;
    size_t len = strlen(name);
    size_t limit = len / 3 > 1 ? len / 3 : 1;
    const char *best = NULL;
    size_t best_dist = limit + 1;
    for (int i = 0; i < n; i++) {
        if (!candidates[i]) continue;
        size_t dist = edit_distance(name, len, candidates[i], strlen(candidates[i]), limit);
        if (dist < best_dist) {
            best = candidates[i];
            best_dist = dist;
        }
    }
    return best;
}
