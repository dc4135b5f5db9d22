#include "actions/runner.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/log.hpp"

extern char** environ;

namespace prom::actions {

struct ScriptRunner::Output {
    int fd = -1;
    std::string name;
    std::string line;
    std::size_t logged = 0;
    bool truncatedNoted = false;
    sd::Source source;
    ~Output() {
        source.reset();
        if (fd >= 0) close(fd);
    }
    void consume(std::string_view data) {
        for (char c : data) {
            if (c == '\n' || line.size() >= 4096) {
                emit();
                if (c == '\n') continue;
            }
            line += c;
        }
    }
    void emit() {
        if (logged < kLogLimit) {
            logged += line.size() + 1;
            log::write(log::Level::Info, name + ": " + line, {{"PROM_ACTION", name}});
        } else if (!truncatedNoted) {
            truncatedNoted = true;
            log::warning(name + ": output beyond " + std::to_string(kLogLimit) + " bytes is not logged");
        }
        line.clear();
    }
};

ScriptRunner::ScriptRunner(sd::EventLoop& loop) : m_loop(loop) {}

ScriptRunner::~ScriptRunner() {
    if (m_pid > 0) killGroup();
}

void ScriptRunner::killGroup() {
    if (m_pid > 0) kill(-m_pid, SIGKILL);
}

void ScriptRunner::run(const std::string& name, const config::Action& action, const std::map<std::string, std::string>& env,
                       std::chrono::milliseconds timeout, Done done) {
    if (m_pid > 0) throw std::logic_error("ScriptRunner::run while an action runs: actions must never overlap");
    m_name = name;
    m_timedOut = false;
    m_cancelled = false;
    if (action.kind == config::Action::Kind::StartUnit || action.kind == config::Action::Kind::StopUnit) {
        done(core::ActionOutcome::Failed, "unit actions run through actions::Runner, not ScriptRunner");
        return;
    }
    std::vector<std::string> argv;
    if (action.kind == config::Action::Kind::Shell)
        argv = {"/bin/sh", "-c", action.command};
    else
        argv = action.argv;
    if (argv.empty()) {
        done(core::ActionOutcome::Failed, "no command configured");
        return;
    }

    std::vector<std::string> envStrings;
    for (char** e = environ; *e; ++e) {
        std::string_view kv(*e);
        auto key = kv.substr(0, kv.find('='));
        // The notify socket belongs to prom: a script must not be able to send READY/WATCHDOG.
        if (key == "NOTIFY_SOCKET" || env.count(std::string(key))) continue;
        envStrings.emplace_back(kv);
    }
    for (const auto& [k, v] : env) envStrings.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : envStrings) envp.push_back(s.data());
    envp.push_back(nullptr);
    for (auto& s : argv) args.push_back(s.data());
    args.push_back(nullptr);

    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) != 0) {
        done(core::ActionOutcome::Failed, std::string("pipe: ") + std::strerror(errno));
        return;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDOUT_FILENO);
    posix_spawn_file_actions_adddup2(&fa, pipefd[1], STDERR_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setpgroup(&attr, 0);  // own process group: a timeout kills all of it
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
    pid_t pid = 0;
    int rc = posix_spawn(&pid, args[0], &fa, &attr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(pipefd[1]);
    if (rc != 0) {
        close(pipefd[0]);
        done(core::ActionOutcome::Failed, "cannot run " + argv[0] + ": " + std::strerror(rc));
        return;
    }
    m_pid = pid;
    m_done = std::move(done);

    // Drained until EOF, even after the script exits: a service it started in the background
    // may hold the pipe and must not die of SIGPIPE or block on a full pipe.
    auto out = std::make_unique<Output>();
    out->fd = pipefd[0];
    out->name = name;
    fcntl(out->fd, F_SETFL, O_NONBLOCK);
    int fd = out->fd;
    Output* raw = out.get();
    out->source = m_loop.addIo(fd, EPOLLIN, [this, raw, fd](std::uint32_t) {
        char buf[16384];
        for (;;) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n > 0) {
                raw->consume(std::string_view(buf, static_cast<std::size_t>(n)));
                continue;
            }
            if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
            if (!raw->line.empty()) raw->emit();
            m_outputs.erase(fd);  // EOF: every holder of the pipe is gone
            return;
        }
    });
    m_outputs[fd] = std::move(out);

    m_child = m_loop.addChild(pid, [this](const siginfo_t& si) {
        m_child.reset();
        m_timer.reset();
        m_pid = 0;
        if (m_cancelled) return finish(core::ActionOutcome::Cancelled, "cancelled");
        if (m_timedOut) return finish(core::ActionOutcome::TimedOut, "killed after its timeout");
        if (si.si_code == CLD_EXITED) {
            if (si.si_status == 0) return finish(core::ActionOutcome::AlreadyInMode, "exit 0 (already in mode)");
            if (si.si_status == 2) return finish(core::ActionOutcome::Switched, "exit 2 (switched)");
            return finish(core::ActionOutcome::Failed, "exit status " + std::to_string(si.si_status));
        }
        finish(core::ActionOutcome::Failed, std::string("killed by signal ") + strsignal(si.si_status));
    });
    m_timer = m_loop.addTimer(sd::EventLoop::now() + timeout, [this] {
        m_timedOut = true;
        killGroup();
    });
}

void ScriptRunner::cancel() {
    if (m_pid <= 0) return;
    m_cancelled = true;
    killGroup();
}

void ScriptRunner::finish(core::ActionOutcome outcome, const std::string& detail) {
    Done done = std::move(m_done);
    m_done = nullptr;
    if (done) done(outcome, detail);
}

}  // namespace prom::actions
