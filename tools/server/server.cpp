// kiln-server: an OpenAI-compatible HTTP server. The batching, scheduling and prefix cache
// are the library's kiln::Engine; this file is the thin HTTP layer (cpp-httplib) and
// openai_api.cpp the JSON.
#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include "flags.h"
#include "kiln/engine.h"
#include "kiln/format/gguf.h"
#include "openai_api.h"

namespace {

using kiln::Status;
using kiln::server::ApiDefaults;
using kiln::server::BadRequest;
using kiln::server::Json;

struct ServerArgs {
    std::string model, model_draft, host = "127.0.0.1", api_key, alias, chat_format, isa;
    int port = 8080;
    int cache_ram_mib = -1;  // prefix cache KV budget; < 0: as much as the slots' context
    kiln::EngineOptions engine;
    kiln::LoadOptions load;
    kiln::SamplerParams sampling;
    int n_predict = -1;
    size_t max_body = 8 << 20;
};

Status parse_args(int argc, char** argv, ServerArgs* out, std::string* help) {
    ServerArgs& a = *out;
    kiln::cli::Flags f("kiln-server -m MODEL.gguf [--host 127.0.0.1] [--port 8080] [-np N] [-c CTX] [options]",
                       "Endpoints: POST /v1/chat/completions, /v1/completions, /tokenize, /detokenize;\n"
                       "GET /v1/models, /health, /metrics (Prometheus). SIGINT/SIGTERM end in-flight streams and exit 0.\n");
    f.string("-m, --model", "PATH", "GGUF file or Hugging Face checkpoint directory", &a.model);
    f.string("--host", "ADDR", "address to listen on (default 127.0.0.1)", &a.host);
    f.integer("--port", "N", "port (default 8080; 0: any free port, printed at start)", &a.port, 0, 65535);
    f.string("--api-key", "KEY", "require 'Authorization: Bearer KEY' on every endpoint but /health", &a.api_key);
    f.string("-a, --alias", "NAME", "model name the API reports and requests may use (default: the file name)", &a.alias);
    f.integer("-np, --parallel", "N", "requests decoded together (default 4)", &a.engine.n_parallel, 1, 256);
    f.integer("-b, --batch-size", "N", "tokens per forward step: decoding tokens plus prompt chunks (default 512)", &a.engine.step_tokens, 1, 1 << 16);
    f.integer("--max-queue", "N", "requests waiting for a slot before new ones get 503 (default 64)", &a.engine.max_queue, 0, 1 << 16);
    f.integer("--cache-ram", "MiB", "KV memory for cached prompt prefixes beyond the slots' (default: as much as the slots)", &a.cache_ram_mib, 0, 1 << 24);
    f.integer("--cache-entries", "N", "cached prefixes kept at most (default 2 x -np)", &a.engine.cache_entries, 0, 1 << 16);
    f.value("--chat-format", "NAME", "chatml | llama3 | gemma | llama2 | deepseek-r1 (instead of the model's template)", [&a](const std::string& v) {
        return a.chat_format = v, Status::ok();
    });
    f.integer("--lookup-ngram", "N", "speculative decoding by prompt lookup (n-grams N..1) for greedy requests while the\n"
              "batch is small (exactly the greedy tokens; a request's \"speculative\": false opts out)", &a.engine.lookup_ngram, 0, 64);
    f.string("-md, --model-draft", "FILE", "draft model (same vocabulary) for greedy requests where lookup finds nothing", &a.model_draft);
    f.integer("--draft-max", "N", "draft-model tokens per request and step (default 5, at most 7)", &a.engine.draft_max, 1, 7);
    f.integer("-n, --n-predict", "N", "max_tokens when a request gives none (default -1: to end of text or context)", &a.n_predict, -1, 1 << 24);
    f.section("Sampling defaults (requests override them)");
    kiln::cli::add_sampling_flags(f, a.sampling);
    f.section("Model and session (-c is the context of all slots together, as llama-server's)");
    kiln::cli::add_session_flags(f, a.engine.session, a.isa);
    kiln::cli::add_load_flags(f, a.load);
    KILN_TRY(f.parse(argc, argv));
    if (f.help_requested()) {
        *help = f.help();
        return Status::ok();
    }
    if (a.model.empty()) return Status::error("-m MODEL is required");
    if (!a.isa.empty()) a.engine.session.isa = a.isa.c_str();
    return kiln::validate(a.sampling);
}

std::string random_id(const char* prefix) {
    static std::atomic<uint64_t> counter{0};
    static const uint64_t salt = std::random_device{}();
    char buf[48];
    std::snprintf(buf, sizeof buf, "%s%016llx", prefix, (unsigned long long)((salt << 20) ^ counter.fetch_add(1)));
    return buf;
}

long unix_now() { return long(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()); }

void send_error(httplib::Response& res, int status, const std::string& message) {
    const char* type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error" : status >= 500 ? "unavailable_error" : "invalid_request_error";
    res.status = status;
    res.set_content(kiln::server::dump(kiln::server::error_body(message, type)), "application/json");
}

std::string metrics_text(const kiln::EngineMetrics& m) {
    std::string out;
    auto add = [&](const char* name, const char* type, const char* help, double v) {
        char line[160];
        std::snprintf(line, sizeof line, "%.17g", v);
        out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n" + name + " " + line + "\n";
    };
    add("kiln_requests_total", "counter", "Requests accepted.", double(m.requests));
    add("kiln_requests_refused_total", "counter", "Requests refused (queue full or shutting down).", double(m.requests_refused));
    add("kiln_requests_finished_total", "counter", "Requests finished.", double(m.requests_finished));
    add("kiln_requests_cancelled_total", "counter", "Requests cancelled (client gone or shutdown).", double(m.requests_cancelled));
    add("kiln_prompt_tokens_total", "counter", "Prompt tokens of accepted requests.", double(m.prompt_tokens));
    add("kiln_prompt_tokens_cached_total", "counter", "Prompt tokens served from the prefix cache.", double(m.prompt_tokens_cached));
    add("kiln_prompt_tokens_computed_total", "counter", "Prompt tokens computed.", double(m.prompt_tokens_computed));
    add("kiln_prefix_cache_hits_total", "counter", "Requests that reused a cached prefix.", double(m.prefix_cache_hits));
    add("kiln_tokens_generated_total", "counter", "Tokens generated.", double(m.generated_tokens));
    add("kiln_steps_total", "counter", "Forward steps.", double(m.steps));
    add("kiln_speculative_drafted_total", "counter", "Tokens drafted by prompt lookup.", double(m.spec_drafted));
    add("kiln_speculative_accepted_total", "counter", "Drafted tokens verification kept.", double(m.spec_accepted));
    add("kiln_requests_queued", "gauge", "Requests waiting for a slot.", m.queued);
    add("kiln_requests_running", "gauge", "Requests holding a slot.", m.running);
    add("kiln_cached_prefixes", "gauge", "Cached prompt prefixes.", m.cached_prefixes);
    add("kiln_kv_positions_used", "gauge", "KV cache positions in use (whole pages).", m.kv_used);
    add("kiln_kv_positions_total", "gauge", "KV cache positions in the pool.", m.kv_total);
    add("kiln_kv_usage_ratio", "gauge", "KV cache use.", m.kv_total ? double(m.kv_used) / m.kv_total : 0);
    add("kiln_prompt_tokens_per_second", "gauge", "Prompt tokens computed per second of prompt steps.",
        m.prompt_seconds > 0 ? double(m.prompt_tokens_computed) / m.prompt_seconds : 0);
    add("kiln_generated_tokens_per_second", "gauge", "Tokens generated per second of all steps.",
        m.prompt_seconds + m.decode_seconds > 0 ? double(m.generated_tokens) / (m.prompt_seconds + m.decode_seconds) : 0);
    return out;
}

sigset_t stop_signals() {
    sigset_t s;
    sigemptyset(&s);
    sigaddset(&s, SIGINT);
    sigaddset(&s, SIGTERM);
    return s;
}

}  // namespace

int main(int argc, char** argv) {
    auto fail = [](const std::string& m) { return kiln::cli::fail("kiln-server", m); };
    ServerArgs a;
    std::string help;
    if (Status s = parse_args(argc, argv, &a, &help); !s) return fail(s.message());
    if (!help.empty()) return std::fputs(help.c_str(), stdout), 0;
    // SIGINT/SIGTERM are taken by one thread (sigwait) below: blocked here, before any
    // thread starts, so every thread inherits the mask.
    const sigset_t signals = stop_signals();
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    auto model = kiln::Model::load(a.model, a.load);
    if (!model) return fail(model.message());
    const kiln::ModelConfig& c = model.value()->config();
    ApiDefaults d;
    d.tokenizer = &model.value()->tokenizer();
    d.sampling = a.sampling;
    d.max_tokens = a.n_predict;
    d.model_name = a.alias;
    if (d.model_name.empty()) {
        d.model_name = a.model.substr(a.model.find_last_of('/') + 1);
        if (d.model_name.size() > 5 && d.model_name.ends_with(".gguf")) d.model_name.resize(d.model_name.size() - 5);
    }
    // Chat: the model's own template through the Jinja engine (as llama-server --jinja), or a
    // built-in format (--chat-format, or when the template does not render).
    std::string chat_error;
    const kiln::GgufFile& gguf = model.value()->gguf();
    const std::string source = gguf.get_string("tokenizer.chat_template").value();
    if (!a.chat_format.empty()) {
        auto f = kiln::parse_chat_format(a.chat_format);
        if (!f) return fail(f.message());
        d.chat_template.format = f.value();
    } else if (!source.empty()) {
        auto probe = kiln::render_jinja_chat(source, {R"([{"role": "user", "content": "Hi"}])", "", true}, *d.tokenizer);
        if (probe) {
            d.jinja_source = source;
            d.tool_style = kiln::tool_call_style(source);
        } else {
            std::fprintf(stderr, "kiln-server: the model's chat template does not render (%s); using the built-in format\n", probe.message().c_str());
        }
    }
    if (d.jinja_source.empty() && a.chat_format.empty()) {
        auto t = kiln::chat_template_for(source, gguf.get_string("general.architecture").value());
        if (t) d.chat_template = t.value();
        else chat_error = t.message();  // /v1/chat/completions answers 400 with it
    }
    kiln::EngineOptions eo = a.engine;
    if (eo.session.n_ctx > 0) eo.n_ctx_per_seq = eo.session.n_ctx / eo.n_parallel;
    if (a.cache_ram_mib >= 0) {
        const size_t per_position = size_t(c.n_layer) * (kiln::row_bytes(eo.session.type_k, int64_t(c.n_head_kv) * c.head_dim) +
                                                         kiln::row_bytes(eo.session.type_v, int64_t(c.n_head_kv) * c.head_dim_v));
        eo.cache_positions = int(std::min<size_t>(size_t(a.cache_ram_mib) << 20, size_t(1) << 40) / per_position);
    }
    if (!a.model_draft.empty()) {
        auto dm = kiln::Model::load(a.model_draft, a.load);
        if (!dm) return fail("-md: " + dm.message());
        eo.draft_model = dm.value();
    }
    auto created = kiln::Engine::create(model.value(), eo);
    if (!created) return fail(created.message());
    kiln::Engine& engine = *created.value();

    httplib::Server svr;
    // Every request holds a thread while it waits for its tokens: room for the slots, the
    // queue and a few more (health checks, metrics, the requests that get 503).
    const size_t n_threads = size_t(eo.n_parallel + eo.max_queue + 8);
    svr.new_task_queue = [n_threads] { return new httplib::ThreadPool(n_threads); };
    svr.set_payload_max_length(a.max_body);
    svr.set_read_timeout(30, 0);
    std::atomic<int> streams{0};  // streaming responses not yet finished
    svr.set_pre_routing_handler([&](const httplib::Request& req, httplib::Response& res) {
        if (a.api_key.empty() || req.path == "/health") return httplib::Server::HandlerResponse::Unhandled;
        const std::string auth = req.get_header_value("Authorization");
        if (auth == "Bearer " + a.api_key) return httplib::Server::HandlerResponse::Unhandled;
        send_error(res, 401, auth.empty() ? "missing API key: send 'Authorization: Bearer KEY'" : "invalid API key");
        return httplib::Server::HandlerResponse::Handled;
    });

    auto completion = [&](bool chat) {
        return [&, chat](const httplib::Request& req, httplib::Response& res) {
            if (chat && !chat_error.empty()) return send_error(res, 400, chat_error + " (start the server with --chat-format)");
            kiln::server::ParsedRequest parsed;
            try {
                parsed = kiln::server::parse_completion_request(req.body, chat, d);
            } catch (const BadRequest& e) {
                return send_error(res, 400, e.what());
            }
            kiln::Refusal why;
            auto submitted = engine.submit(parsed.engine, &why);
            if (!submitted) return send_error(res, why == kiln::Refusal::Invalid ? 400 : 503, submitted.message());
            std::shared_ptr<kiln::RequestHandle> h = submitted.value();
            struct Stream {  // what the response needs, shared with the streaming callbacks
                kiln::server::ParsedRequest parsed;
                kiln::server::Responder responder;  // refers to parsed
                std::shared_ptr<kiln::RequestHandle> handle;
                Stream(kiln::server::ParsedRequest p, const ApiDefaults& d, std::string id, std::shared_ptr<kiln::RequestHandle> h)
                    : parsed(std::move(p)), responder(parsed, d, std::move(id), unix_now()), handle(std::move(h)) {}
            };
            auto st = std::make_shared<Stream>(std::move(parsed), d, random_id(chat ? "chatcmpl-" : "cmpl-"), h);
            if (!st->parsed.stream) {
                for (kiln::EngineEvent e; h->next(&e);) {
                    if (!e.done) {
                        st->responder.on_token(e);
                        continue;
                    }
                    if (!e.error.empty()) return send_error(res, 500, e.error);
                    return res.set_content(st->responder.on_done(e), "application/json");
                }
                return;
            }
            ++streams;
            res.set_header("Cache-Control", "no-cache");
            res.set_chunked_content_provider(
                "text/event-stream",
                [st](size_t, httplib::DataSink& sink) {
                    // A client that went away cancels its request (the engine frees its sequence).
                    if (!sink.is_writable()) return st->handle->cancel(), false;
                    kiln::EngineEvent e;
                    if (!st->handle->next(&e, std::chrono::milliseconds(100))) return true;
                    std::string out;
                    if (e.done && !e.error.empty())
                        out = "data: " + kiln::server::dump(kiln::server::error_body(e.error, "server_error")) + "\n\ndata: [DONE]\n\n";
                    else out = e.done ? st->responder.on_done(e) : st->responder.on_token(e);
                    if (!out.empty() && !sink.write(out.data(), out.size())) return st->handle->cancel(), false;
                    if (e.done) sink.done();
                    return true;
                },
                [st, &streams](bool ok) {
                    if (!ok) st->handle->cancel();
                    --streams;
                });
        };
    };
    for (const char* p : {"/v1/chat/completions", "/chat/completions"}) svr.Post(p, completion(true));
    for (const char* p : {"/v1/completions", "/completions"}) svr.Post(p, completion(false));
    auto models = [&](const httplib::Request&, httplib::Response& res) {
        const Json m = {{"id", d.model_name},
                        {"object", "model"},
                        {"created", unix_now()},
                        {"owned_by", "kiln"},
                        {"meta", {{"n_vocab", c.n_vocab}, {"n_ctx_per_seq", engine.n_ctx_per_seq()}, {"n_parallel", engine.n_parallel()}, {"n_params", model.value()->n_params()},
                                  {"description", model.value()->description()}}}};
        res.set_content(kiln::server::dump({{"object", "list"}, {"data", Json::array({m})}}), "application/json");
    };
    svr.Get("/v1/models", models);
    svr.Get("/models", models);
    svr.Get("/health", [](const httplib::Request&, httplib::Response& res) { res.set_content(R"({"status":"ok"})", "application/json"); });
    svr.Get("/metrics", [&](const httplib::Request&, httplib::Response& res) { res.set_content(metrics_text(engine.metrics()), "text/plain; version=0.0.4"); });
    svr.Post("/tokenize", [&](const httplib::Request& req, httplib::Response& res) {
        const Json body = Json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("content") || !body["content"].is_string())
            return send_error(res, 400, "/tokenize takes {\"content\": string, \"add_special\": bool, \"with_pieces\": bool}");
        const bool add_special = body.value("add_special", false) == true, pieces = body.value("with_pieces", false) == true;
        Json tokens = Json::array();
        for (int32_t t : d.tokenizer->encode(body["content"].get<std::string>(), add_special, /*parse_special=*/true)) {
            if (pieces) tokens.push_back({{"id", t}, {"piece", d.tokenizer->token_to_piece(t, true)}});
            else tokens.push_back(t);
        }
        res.set_content(kiln::server::dump({{"tokens", tokens}}), "application/json");
    });
    svr.Post("/detokenize", [&](const httplib::Request& req, httplib::Response& res) {
        const Json body = Json::parse(req.body, nullptr, false);
        if (!body.is_object() || !body.contains("tokens") || !body["tokens"].is_array()) return send_error(res, 400, "/detokenize takes {\"tokens\": [ids]}");
        std::vector<int32_t> ids;
        for (const Json& t : body["tokens"]) {
            if (!t.is_number_integer() || t.get<long long>() < 0 || t.get<long long>() >= c.n_vocab)
                return send_error(res, 400, "'tokens' must be token ids in [0, " + std::to_string(c.n_vocab) + ")");
            ids.push_back(int32_t(t.get<long long>()));
        }
        res.set_content(kiln::server::dump({{"content", d.tokenizer->decode(ids, /*render_special=*/true)}}), "application/json");
    });
    svr.set_error_handler([](const httplib::Request& req, httplib::Response& res) {
        if (res.status == 404) send_error(res, 404, "no endpoint " + req.method + " " + req.path);
        else if (res.status == 413) send_error(res, 413, "the request body is larger than the server takes");
    });
    svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
        std::string what = "internal error";
        try {
            std::rethrow_exception(ep);
        } catch (const std::exception& e) {
            what = e.what();
        } catch (...) {
        }
        send_error(res, 500, what);
    });

    const int port = a.port == 0 ? svr.bind_to_any_port(a.host) : (svr.bind_to_port(a.host, a.port) ? a.port : -1);
    if (port < 0) return fail("cannot listen on " + a.host + ":" + std::to_string(a.port) + " (in use, or a bad address)");
    std::fprintf(stderr, "kiln-server: %s, %d slots x %d tokens, listening on http://%s:%d\n", model.value()->description().c_str(), engine.n_parallel(),
                 engine.n_ctx_per_seq(), a.host.c_str(), port);
    std::fflush(stderr);

    std::atomic<bool> signalled{false};
    std::thread stopper([&] {
        int sig = 0;
        sigwait(&signals, &sig);
        if (signalled.exchange(true)) return;  // the listener ended by itself (below)
        std::fprintf(stderr, "kiln-server: %s: finishing in-flight requests\n", sig == SIGINT ? "SIGINT" : "SIGTERM");
        engine.shutdown();  // new requests get 503; running ones end (their streams get the last chunks)
        for (int i = 0; i < 100 && streams.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
        svr.stop();
    });
    const bool ok = svr.listen_after_bind();
    if (!signalled.exchange(true)) {  // not stopped by a signal: wake the stopper thread and fail
        pthread_kill(stopper.native_handle(), SIGTERM);
        stopper.join();
        engine.shutdown();
        return fail(ok ? "the listener stopped" : "the listener failed");
    }
    stopper.join();
    std::fprintf(stderr, "kiln-server: stopped\n");
    return 0;
}
