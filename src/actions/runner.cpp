#include "actions/runner.hpp"

#include "actions/environment.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/log.hpp"

extern char** environ;

namespace prom::actions {

namespace {
// An exiting action's pipe is drained at most this much more before it is closed: a
// background child that keeps writing must not keep prom reading.
constexpr std::size_t kDrainAtExit = 256 * 1024;

std::string seconds(std::chrono::milliseconds d) {
    if (d.count() % 1000 == 0) return std::to_string(d.count() / 1000) + " s";
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(d.count()) / 1000);
    return buf;
}
}  // namespace

struct ScriptRunner::Output {
    int fd = -1;
    std::string name;
    std::string line;
    ScriptRunner* runner = nullptr;
    sd::Source source;
    ~Output() {
        source.reset();
        if (fd >= 0) close(fd);
    }
    /** Reads what is there; false at EOF or error. At most `limit` bytes when given. */
    bool drain(std::size_t limit = SIZE_MAX) {
        char buf[16384];
        std::size_t total = 0;
        while (total < limit) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n > 0) {
                consume(std::string_view(buf, static_cast<std::size_t>(n)));
                total += static_cast<std::size_t>(n);
                continue;
            }
            if (n < 0 && errno == EINTR) continue;
            return n < 0 && errno == EAGAIN;
        }
        return true;
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
        runner->logLine(name, line);
        line.clear();
    }
};

const std::vector<std::string>& ScriptRunner::scrubbedEnvironment() { return actions::scrubbedEnvironment(); }

ScriptRunner::ScriptRunner(sd::EventLoop& loop, OutputLimit limit) : m_loop(loop), m_limit(limit) {}

ScriptRunner::~ScriptRunner() {
    if (m_pid > 0) killGroup();
}

void ScriptRunner::killGroup() {
    if (m_pid > 0) kill(-m_pid, SIGKILL);
}

void ScriptRunner::logLine(const std::string& action, const std::string& line) {
    auto now = sd::EventLoop::now();
    if (now >= m_windowStart + m_limit.window) {
        closeWindow();
        m_windowStart = now;
    }
    std::size_t size = line.size() + 1;
    // Once something was dropped, the rest of the window is too: the log shows a stretch of
    // output without holes in it.
    if (m_droppedLines == 0 && m_windowLines < m_limit.lines && m_windowBytes + size <= m_limit.bytes) {
        ++m_windowLines;
        m_windowBytes += size;
        log::write(log::Level::Info, action + ": " + line, {{"PROM_ACTION", action}});
        return;
    }
    if (m_droppedLines == 0) {
        log::warning("action output beyond " + std::to_string(m_limit.lines) + " lines or " +
                     std::to_string(m_limit.bytes) + " bytes per " + seconds(m_limit.window) +
                     " is not logged; a count follows when the " + seconds(m_limit.window) + " are over");
        // The count is logged when the window ends, even if no more output comes.
        m_windowEnd = m_loop.addTimer(m_windowStart + m_limit.window, [this] {
            closeWindow();
            m_windowStart = sd::EventLoop::now();
        });
    }
    ++m_droppedLines;
    m_droppedBytes += size;
}

void ScriptRunner::closeWindow() {
    m_windowEnd.reset();
    if (m_droppedLines > 0)
        log::write(log::Level::Warning,
                   std::to_string(m_droppedLines) + " lines (" + std::to_string(m_droppedBytes) +
                       " bytes) of action output were not logged in the last " + seconds(m_limit.window),
                   {{"PROM_ACTION_DROPPED_LINES", std::to_string(m_droppedLines)},
                    {"PROM_ACTION_DROPPED_BYTES", std::to_string(m_droppedBytes)}});
    m_windowLines = m_windowBytes = m_droppedLines = m_droppedBytes = 0;
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
        const auto& scrubbed = scrubbedEnvironment();
        if (std::find(scrubbed.begin(), scrubbed.end(), key) != scrubbed.end() || env.count(std::string(key))) continue;
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
    // Whatever a library of prom opened without O_CLOEXEC (sockets, the lease file, curl's
    // handles) stays in prom: the action gets stdin, stdout and stderr only.
    posix_spawn_file_actions_addclosefrom_np(&fa, STDERR_FILENO + 1);
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

    // Drained while the action runs; closed when it exits (see m_child below).
    m_output = std::make_unique<Output>();
    m_output->fd = pipefd[0];
    m_output->name = name;
    m_output->runner = this;
    fcntl(m_output->fd, F_SETFL, O_NONBLOCK);
    m_output->source = m_loop.addIo(m_output->fd, EPOLLIN, [this](std::uint32_t) {
        if (m_output->drain()) return;
        // EOF before the exit: every holder of the pipe closed it.
        if (!m_output->line.empty()) m_output->emit();
        m_output.reset();
    });

    m_child = m_loop.addChild(pid, [this](const siginfo_t& si) {
        m_child.reset();
        m_timer.reset();
        m_pid = 0;
        // What the action wrote is in the pipe now; read it and close our end. A background
        // child it left holding the pipe would otherwise keep one fd of prom open per run
        // (prom ran out of descriptors); that child's later writes fail with EPIPE.
        if (m_output) {
            m_output->drain(kDrainAtExit);
            if (!m_output->line.empty()) m_output->emit();
            m_output.reset();
        }
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
