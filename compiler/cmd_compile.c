/* cmd_compile.c — `nnc compile`: a model to an object file (or assembly, LLVM IR, bitcode)
 * plus its C header (docs/c-api.md, docs/cli.md).
 *
 *   nnc compile FILE.nn [-o OUT] [--header H | --no-header] [--emit=obj|asm|llvm|bc]
 *                       [--target=TRIPLE] [--cpu=NAME] [-O0..-O3] [--model M]
 *                       [--embed-weights W.safetensors]
 *
 * Outputs default to the input's path without `.nn`: m.nn -> m.o and m.h (m.s, m.ll, m.bc
 * for the other kinds); the header defaults to OUT with its extension replaced by `.h`.
 * With --embed-weights the object is inference-only (infer, evaluate, info): the weights
 * are constant data in .rodata, derived tensors (folded batchnorm) computed at compile time,
 * and the context's state pointer may be NULL. A model without
 * a loss gets init, infer and info only. */
#include "nnc.h"
#include "nnrt.h"

#include <stdlib.h>
#include <string.h>

static void compile_usage(FILE *out) {
    fprintf(out,
            "usage: nnc compile FILE.nn [options]\n\n"
            "Compiles a model to native code and a C header (docs/c-api.md).\n\n"
            "  -o OUT                    output file (default: FILE without .nn, plus .o/.s/.ll/.bc)\n"
            "  --header H                the C header (default: OUT with the extension .h)\n"
            "  --no-header               do not write a header\n"
            "  --emit=obj|asm|llvm|bc    object file (default), assembly, LLVM IR text or bitcode\n"
            "  --target=TRIPLE           cross-compile, e.g. aarch64-linux-gnu (default: this host)\n"
            "  --cpu=NAME                the CPU to tune and select instructions for (default: this\n"
            "                            host's, or 'generic' with --target)\n"
            "  -O0 -O1 -O2 -O3           optimization level of the IR passes and LLVM (default -O2)\n"
            "  --model M                 the model when the file defines several\n"
            "  --embed-weights W         bake the weights of checkpoint W (safetensors) into the\n"
            "                            object: inference entries only, state may be NULL\n"
            "  -j N, --jobs=N            threads for an object file (default: one per idle CPU,\n"
            "                            at most 4); the pieces are joined with the system's\n"
            "                            ld -r\n\n"
            "Link: cc app.c OUT -lnnrt -lopenblas -lz -lm\n");
}

static const char *emit_extension(const char *emit) {
    if (!strcmp(emit, "asm")) return ".s";
    if (!strcmp(emit, "llvm")) return ".ll";
    if (!strcmp(emit, "bc")) return ".bc";
    return ".o";
}

/* path with its extension (after the last '/') replaced by ext; malloc'd */
static char *replace_extension(const char *path, const char *ext) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash + 1 : path, '.');
    size_t stem = dot && dot != (slash ? slash + 1 : path) ? (size_t)(dot - path) : strlen(path);
    char *out = malloc(stem + strlen(ext) + 1);
    if (!out) abort();
    memcpy(out, path, stem);
    strcpy(out + stem, ext);
    return out;
}

/* The params and states of checkpoint `path`, laid out in a state block of m (everything else
 * zero). Tensors of other kinds in the file (optimizer slots, the step) are ignored, since an
 * inference object has none. Returns a malloc'd block or NULL after printing the problem. */
static void *load_embedded_weights(Module *m, const char *path) {
    nnrt_st_file file;
    nnrt_error err;
    int rc = nnrt_st_read(path, &file, &err);
    if (rc) {
        fprintf(stderr, "nnc: error: %s\n", err.msg[0] ? err.msg : nnrt_strerror(rc));
        return NULL;
    }
    uint8_t *state = calloc(1, (size_t)llvm_state_bytes(m));
    if (!state) abort();
    bool ok = true;
    for (int i = 0; i < m->ntensors && ok; i++) {
        const ModTensor *t = &m->tensors[i];
        if (t->kind != TK_PARAM && t->kind != TK_STATE) continue;
        const nnrt_st_tensor *st = nnrt_st_find(&file, t->name);
        if (!st) {
            fprintf(stderr, "%s: error: the checkpoint has no tensor '%s' (model '%s')\n", path, t->name, m->name);
            ok = false;
            break;
        }
        bool same = st->dtype == (int)t->dtype && st->rank == t->shape.rank;
        for (int d = 0; same && d < st->rank; d++) same = st->shape[d] == t->shape.dim[d];
        if (!same) {
            char want[96];
            fprintf(stderr, "%s: error: tensor '%s' is %s of rank %d, the model needs %s%s\n", path, t->name,
                    nnrt_dtype_name(st->dtype), st->rank, dtype_names[t->dtype],
                    shape_str(&t->shape, want, sizeof want));
            ok = false;
            break;
        }
        memcpy(state + t->offset, st->data, (size_t)t->bytes);
    }
    nnrt_st_free(&file);
    if (!ok) {
        free(state);
        return NULL;
    }
    return state;
}

/* The derived tensors of embedded weights, computed at compile time: the module's prepare
 * through the interpreter in f32 mode (every value rounded as compiled code rounds it), into
 * `state`. The object then reads the folded weights from .rodata and prepares nothing at run
 * time. 0, or 1 after printing the problem. */
static int prepare_embedded_weights(Module *m, void *state) {
    Func *prep = module_find_func(m, "prepare");
    if (!prep) return 0;
    Interp in;
    interp_init(&in, m, false);
    interp_load_state(&in, state);
    char err[512];
    int rc = interp_run(&in, prep, 1, NULL, NULL, err, sizeof err);
    if (rc) fprintf(stderr, "nnc: error: cannot compute the derived weights of '%s': %s\n", m->name, err);
    else interp_save_state(&in, state);
    interp_free(&in);
    return rc != 0;
}

int cmd_compile(int argc, char **argv) {
    static const char *const known[] = {"-o", "--header", "--no-header", "--emit", "--target", "--cpu",
                                        "-O0", "-O1", "-O2", "-O3", "--model", "--embed-weights", "-j", "--jobs", "--help"};
    const char *input = NULL, *output = NULL, *header = NULL, *model = NULL, *weights = NULL, *jobs = NULL;
    bool no_header = false;
    CodegenOptions co = {.opt_level = 2, .emit = "obj"};
    const struct {
        const char *name;
        const char **value;
    } valued[] = {{"-o", &output},      {"--header", &header}, {"--emit", &co.emit},
                  {"--target", &co.target}, {"--cpu", &co.cpu},  {"--model", &model},
                  {"--embed-weights", &weights}, {"--jobs", &jobs}, {"-j", &jobs}};
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            compile_usage(stdout);
            return 0;
        }
        if (!strcmp(a, "--no-header")) {
            no_header = true;
            continue;
        }
        if (a[0] == '-' && a[1] == 'j' && a[2] >= '0' && a[2] <= '9') { /* -jN */
            jobs = a + 2;
            continue;
        }
        if (a[0] == '-' && a[1] == 'O' && a[2] >= '0' && a[2] <= '3' && !a[3]) {
            co.opt_level = a[2] - '0';
            continue;
        }
        bool matched = false;
        for (size_t k = 0; k < sizeof valued / sizeof valued[0] && !matched; k++) {
            const char *v;
            if (!opt_value(argc, argv, &i, valued[k].name, &v)) continue;
            if (!v) return 2; /* opt_value said what is missing */
            *valued[k].value = v;
            matched = true;
        }
        if (matched) continue;
        if (a[0] == '-' && a[1]) return unknown_option("compile", a, known, (int)(sizeof known / sizeof known[0]));
        if (input) {
            fprintf(stderr, "nnc compile: error: more than one input file ('%s' and '%s')\n", input, a);
            return 2;
        }
        input = a;
    }
    if (jobs) {
        int64_t j;
        if (!parse_int_arg("--jobs", jobs, 1, 8, &j)) return 2;
        co.jobs = (int)j;
    }
    if (!input) {
        fprintf(stderr, "nnc compile: error: no input file\n");
        compile_usage(stderr);
        return 2;
    }
    if (strcmp(co.emit, "obj") && strcmp(co.emit, "asm") && strcmp(co.emit, "llvm") && strcmp(co.emit, "bc")) {
        fprintf(stderr, "nnc compile: error: --emit expects obj, asm, llvm or bc, got '%s'\n", co.emit);
        return 2;
    }
    if (no_header && header) {
        fprintf(stderr, "nnc compile: error: --header and --no-header contradict each other\n");
        return 2;
    }

    /* Training entries for a model that has a loss (driver_load builds them only for
     * those), unless the weights are built in. One load: the front end runs once. */
    DriverOptions dopts = {.train_functions = !weights, .verify = true, .opt_level = co.opt_level, .set_opt = true};
    DriverResult dr;
    int rc = 1;
    char *out_path = NULL, *header_path = NULL;
    void *state = NULL;
    if (driver_load(input, &dopts, &dr)) goto done;
    time_mark("front end");
    Module *m = driver_pick_model(&dr, model);
    if (!m) goto done;
    if (weights) {
        state = load_embedded_weights(m, weights);
        if (!state || prepare_embedded_weights(m, state)) goto done;
        co.embed_weights = state;
    }
    out_path = output ? strdup(output) : replace_extension(input, emit_extension(co.emit));
    if (!no_header) header_path = header ? strdup(header) : replace_extension(out_path, ".h");
    if (!out_path || (!no_header && !header_path)) abort();
    if (header_path && !strcmp(header_path, out_path)) {
        fprintf(stderr, "nnc compile: error: the header would overwrite the output '%s'\n", out_path);
        rc = 2;
        goto done;
    }
    if (llvm_emit_module(m, &co, out_path)) goto done;
    if (header_path && header_emit_embedded(m, header_path, weights != NULL)) goto done;
    time_mark("header");
    rc = 0;
done:
    free(state);
    free(out_path);
    free(header_path);
    driver_free(&dr);
    return rc;
}
