// prom-fence(8 in prom(8), FENCE): systemd's half of the fence. Reads only the fence file that
// prom keeps in its RuntimeDirectory= (never prom's configuration, which may be the reason prom
// cannot start), so it links nothing but sd/fence_file.
//
//   prom-fence arm ID     ExecStopPost= of prom@ID: if prom died while its replica may be
//                         active, copy the fence file aside and have PID 1 run ensure-passive
//                         at its deadline (transient prom-fence@ID.timer), or now when the
//                         deadline has passed.
//   prom-fence demote ID  prom-fence@ID.service (the timer, or OnFailure= of prom@ID): run the
//                         saved ensure-passive unless a restarted prom renewed or cleared it.
// Exit codes: 0 done or nothing to do, 1 the action failed, 64 usage, 65 unreadable fence file.
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "actions/environment.hpp"
#include "sd/fence_file.hpp"

extern char** environ;

namespace {

using prom::sd::FenceAction;
using prom::sd::FenceRecord;

constexpr int kExitFailed = 1;
constexpr int kExitUsage = 64;
constexpr int kExitData = 65;
constexpr int kAttempts = 3;

void say(const std::string& m) { std::fprintf(stderr, "prom-fence: %s\n", m.c_str()); }

std::string env(const char* name) {
    const char* v = std::getenv(name);
    return v ? v : "";
}

std::string livePath(const std::string& id) {
    // systemd sets RUNTIME_DIRECTORY for every Exec*= of prom@ID (colon-separated if several).
    std::string d = env("RUNTIME_DIRECTORY");
    if (!d.empty()) return d.substr(0, d.find(':')) + "/fence";
    return "/run/prom/" + id + "/fence";
}

std::string armedDir() {
    std::string d = env("PROM_FENCE_DIRECTORY");
    return d.empty() ? prom::sd::kArmedDirectory : d;
}

std::string armedPath(const std::string& id) { return armedDir() + "/" + id; }

std::string describe(const FenceAction& a) {
    std::string kind = a.kind == FenceAction::Kind::Shell       ? "sh -c"
                       : a.kind == FenceAction::Kind::Exec      ? "exec"
                       : a.kind == FenceAction::Kind::StartUnit ? "start-unit"
                                                                : "stop-unit";
    std::string s = kind;
    for (const auto& x : a.args) s += " " + x;
    return s;
}

void sleepMs(long ms) {
    timespec ts{ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/** Runs argv with extra environment in its own process group; exit status, or -1. */
int run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& extra, std::uint64_t timeoutMs,
        std::string* why) {
    std::vector<std::string> envStrings;
    for (char** e = environ; *e; ++e) {
        std::string kv(*e);
        std::string key = kv.substr(0, kv.find('='));
        // The same environment as prom's own actions: no credentials, no systemd handles.
        if (prom::actions::scrubbed(key) || extra.count(key)) continue;
        envStrings.push_back(kv);
    }
    for (const auto& [k, v] : extra) envStrings.push_back(k + "=" + v);
    std::vector<char*> envp, args;
    for (auto& s : envStrings) envp.push_back(s.data());
    envp.push_back(nullptr);
    std::vector<std::string> argvCopy = argv;
    for (auto& s : argvCopy) args.push_back(s.data());
    args.push_back(nullptr);

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
    // Like prom's runner: an argv action names its program by path; systemctl/sh by PATH.
    int rc = argv[0].find('/') == std::string::npos ? posix_spawnp(&pid, args[0], nullptr, &attr, args.data(), envp.data())
                                                     : posix_spawn(&pid, args[0], nullptr, &attr, args.data(), envp.data());
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        *why = argv[0] + ": " + std::strerror(rc);
        return -1;
    }
    std::uint64_t start = prom::sd::monotonicUsec();
    for (;;) {
        int status = 0;
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) {
            if (WIFEXITED(status)) return WEXITSTATUS(status);
            *why = "killed by signal " + std::to_string(WTERMSIG(status));
            return -1;
        }
        if (r < 0 && errno != EINTR) {
            *why = std::string("waitpid: ") + std::strerror(errno);
            return -1;
        }
        if (prom::sd::monotonicUsec() - start > timeoutMs * 1000) {
            kill(-pid, SIGKILL);
            waitpid(pid, &status, 0);
            *why = "timed out after " + std::to_string(timeoutMs) + " ms";
            return -1;
        }
        sleepMs(5);
    }
}

/** Runs the saved ensure-passive (PROM exit codes for scripts: 0 or 2 = passive). */
bool demote(const FenceRecord& r) {
    std::vector<std::string> argv;
    switch (r.action.kind) {
        case FenceAction::Kind::Shell: argv = {"/bin/sh", "-c", r.action.args[0]}; break;
        case FenceAction::Kind::Exec: argv = r.action.args; break;
        case FenceAction::Kind::StartUnit: argv = {"systemctl", "start", r.action.args[0]}; break;
        case FenceAction::Kind::StopUnit: argv = {"systemctl", "stop", r.action.args[0]}; break;
    }
    const bool unit = r.action.kind == FenceAction::Kind::StartUnit || r.action.kind == FenceAction::Kind::StopUnit;
    for (int attempt = 1; attempt <= kAttempts; ++attempt) {
        std::string why;
        std::uint64_t t0 = prom::sd::monotonicUsec();
        int status = run(argv, r.env, r.timeoutMs, &why);
        auto took = std::to_string((prom::sd::monotonicUsec() - t0) / 1000);
        if (status == 0 || (!unit && status == 2)) {
            say("replica " + r.replica + " of " + r.app + " demoted (token " + std::to_string(r.token) + "): " +
                describe(r.action) + " finished in " + took + " ms");
            return true;
        }
        if (status > 0) why = "exit status " + std::to_string(status);
        say("ensure-passive of replica " + r.replica + " failed (" + std::to_string(attempt) + "/" + std::to_string(kAttempts) +
            "): " + describe(r.action) + ": " + why);
        if (attempt < kAttempts) sleepMs(200);
    }
    return false;
}

/** After a demotion: the armed copy is spent, and so is the live file unless prom renewed it. */
void forget(const std::string& id, const FenceRecord& done) {
    unlink(armedPath(id).c_str());
    auto live = prom::sd::readFenceFile(livePath(id));
    if (live && live->deadlineBoottimeUsec <= done.deadlineBoottimeUsec) unlink(livePath(id).c_str());
}

std::string ms(std::int64_t usec) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.3f s", static_cast<double>(usec) / 1e6);
    return buf;
}

/** Arms prom-fence@ID.timer for the deadline; false when the deadline passed or PID 1 refused. */
bool armTimer(const std::string& id, std::uint64_t deadlineBoottimeUsec) {
    for (int attempt = 1; attempt <= kAttempts; ++attempt) {
        // Recomputed for every attempt: a failed one costs tens of ms that the timer must not add.
        auto now = prom::sd::boottimeUsec();
        if (now >= deadlineBoottimeUsec) return false;
        // A timer held by PID 1: it fires even while prom is frozen, dead or failing to start.
        // AccuracySec: the default (1 min) would let systemd coalesce it far past the deadline.
        std::vector<std::string> argv = {"systemd-run",
                                         "--quiet",
                                         "--no-ask-password",
                                         "--unit=prom-fence@" + id,
                                         "--on-active=" + std::to_string(deadlineBoottimeUsec - now) + "us",
                                         "--timer-property=AccuracySec=1us",
                                         "--timer-property=RemainAfterElapse=no"};
        std::string why;
        int status = run(argv, {}, 10000, &why);
        if (status == 0) return true;
        say("systemd-run " + argv[3] + " failed (" + (status > 0 ? "exit status " + std::to_string(status) : why) +
            "); replacing an older timer");
        // A timer armed by an earlier death of this prom (a restart that failed again): the newer
        // fence file supersedes it.
        run({"systemctl", "stop", "prom-fence@" + id + ".timer"}, {}, 10000, &why);
    }
    return false;
}

int arm(const std::string& id) {
    std::string error;
    auto r = prom::sd::readFenceFile(livePath(id), &error);
    if (!r) {
        if (error.empty()) return 0;  // no fence file: the replica was passive
        say(error + ": cannot fence replica " + id);
        return kExitData;
    }
    // prom exits 0 only after a stop, having run ensure-passive if it held the role. Only this
    // run's own fence is settled by that: a run that was stopped before it settled (restarted
    // after a crash, never resumed) did not touch the replica its predecessor left active.
    if (env("EXIT_CODE") == "exited" && env("EXIT_STATUS") == "0" && !r->invocation.empty() &&
        r->invocation == env("INVOCATION_ID")) {
        unlink(livePath(id).c_str());
        unlink(armedPath(id).c_str());
        return 0;
    }
    mkdir(armedDir().c_str(), 0755);
    if (!prom::sd::writeFenceFile(armedPath(id), *r, &error)) say(error + ": the timer will find no fence");
    auto left = [&] {
        return static_cast<std::int64_t>(r->deadlineBoottimeUsec) - static_cast<std::int64_t>(prom::sd::boottimeUsec());
    };
    std::string why = "prom@" + id + " ended (" + env("SERVICE_RESULT") + ", " + env("EXIT_CODE") + " " + env("EXIT_STATUS") +
                      ") while replica " + id + " may be active (token " + std::to_string(r->token) + ")";
    if (left() > 0) {
        if (armTimer(id, r->deadlineBoottimeUsec)) {
            say(why + ": prom-fence@" + id + ".timer demotes it in " + ms(left()) + " unless prom resumes first");
            return 0;
        }
        if (left() > 0) say(why + ": could not arm a timer; demoting now, " + ms(left()) + " before the deadline");
    }
    if (left() <= 0) say(why + "; demoting now, " + ms(-left()) + " after the deadline");
    if (!demote(*r)) return kExitFailed;
    forget(id, *r);
    return 0;
}

int demoteArmed(const std::string& id) {
    std::string error;
    auto armed = prom::sd::readFenceFile(armedPath(id), &error);
    if (!armed) {
        if (!error.empty()) {
            say(error + ": cannot fence replica " + id);
            return kExitData;
        }
        say("replica " + id + ": nothing armed (prom came back, or the fence already ran)");
        return 0;
    }
    auto live = prom::sd::readFenceFile(livePath(id));
    if (live && live->deadlineBoottimeUsec > armed->deadlineBoottimeUsec) {
        // prom restarted, got its lease renewed and wrote a later deadline: it holds the fence
        // again (and its own ExecStopPost re-arms it should it die).
        say("replica " + id + ": prom renewed the fence since it was armed; nothing to do");
        unlink(armedPath(id).c_str());
        return 0;
    }
    auto late = static_cast<std::int64_t>(prom::sd::boottimeUsec()) - static_cast<std::int64_t>(armed->deadlineBoottimeUsec);
    // systemd names what started us: TRIGGER_UNIT= (the timer) or MONITOR_UNIT= (OnFailure=).
    std::string by = !env("TRIGGER_UNIT").empty() ? env("TRIGGER_UNIT")
                     : !env("MONITOR_UNIT").empty() ? "OnFailure= of " + env("MONITOR_UNIT") + " (" + env("MONITOR_SERVICE_RESULT") + ")"
                                                    : "a manual start";
    say("replica " + id + ": started by " + by + "; demoting " + (late >= 0 ? ms(late) + " after" : ms(-late) + " before") +
        " the deadline");
    if (!demote(*armed)) return kExitFailed;
    forget(id, *armed);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 3 && std::strcmp(argv[1], "arm") == 0) return arm(argv[2]);
    if (argc == 3 && std::strcmp(argv[1], "demote") == 0) return demoteArmed(argv[2]);
    std::fprintf(argc == 2 && std::strcmp(argv[1], "--help") == 0 ? stdout : stderr,
                 "Usage: prom-fence arm ID      (ExecStopPost= of prom@ID.service)\n"
                 "       prom-fence demote ID   (prom-fence@ID.service)\n"
                 "See FENCE in prom(8).\n");
    return argc == 2 && std::strcmp(argv[1], "--help") == 0 ? 0 : kExitUsage;
}
