#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Runs a program to completion with optional stdin, collecting its output.
///
/// Plain `posix_spawn` and `poll` rather than Foundation's `Process`: on
/// Linux, `Process` needs a loopback socket for its run loop, and `weft init`
/// often runs in a fresh network namespace whose `lo` is still down.
enum CommandRunner {
    struct Result {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(_ path: String, _ arguments: [String], input: String?,
                    environment: [String: String]) throws -> Result {
        // A tool that exits early must not kill us with SIGPIPE while we write its stdin.
        signal(SIGPIPE, SIG_IGN)
        let stdinPipe = try makePipe(), stdoutPipe = try makePipe(), stderrPipe = try makePipe()
        #if canImport(Darwin)
        var actions: posix_spawn_file_actions_t?
        #else
        var actions = posix_spawn_file_actions_t()
        #endif
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // The pipes are close-on-exec; dup2 gives the child its copies on 0, 1, 2.
        if input == nil {
            posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        } else {
            posix_spawn_file_actions_adddup2(&actions, stdinPipe.read, 0)
        }
        posix_spawn_file_actions_adddup2(&actions, stdoutPipe.write, 1)
        posix_spawn_file_actions_adddup2(&actions, stderrPipe.write, 2)

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { (argv + envp).forEach { free($0) } }
        var pid = pid_t()
        let spawned = posix_spawn(&pid, path, &actions, nil, argv, envp)
        close(stdinPipe.read)
        close(stdoutPipe.write)
        close(stderrPipe.write)
        guard spawned == 0 else {
            [stdinPipe.write, stdoutPipe.read, stderrPipe.read].forEach { _ = close($0) }
            throw InitError.cannotRun(path, String(cString: strerror(spawned)))
        }

        _ = fcntl(stdinPipe.write, F_SETFL, fcntl(stdinPipe.write, F_GETFL) | O_NONBLOCK)
        let (output, errors) = pump(input: input.map { Array($0.utf8) } ?? [], to: stdinPipe.write,
                                    stdout: stdoutPipe.read, stderr: stderrPipe.read)
        return Result(status: wait(pid), stdout: String(decoding: output, as: UTF8.self),
                      stderr: String(decoding: errors, as: UTF8.self))
    }

    /// Writes `input` and reads both outputs at once until all three are done,
    /// so that no pipe can fill up and stall the child. Closes the descriptors.
    private static func pump(input: [UInt8], to inputFD: Int32,
                             stdout: Int32, stderr: Int32) -> ([UInt8], [UInt8]) {
        var inputFD = inputFD, written = 0
        var open: [Int32: [UInt8]] = [stdout: [], stderr: []]
        var collected: [Int32: [UInt8]] = [:]
        if input.isEmpty { close(inputFD); inputFD = -1 }
        var buffer = [UInt8](repeating: 0, count: 65536)
        while inputFD >= 0 || !open.isEmpty {
            var fds = open.keys.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
            if inputFD >= 0 { fds.append(pollfd(fd: inputFD, events: Int16(POLLOUT), revents: 0)) }
            if poll(&fds, nfds_t(fds.count), -1) < 0 {
                if errno == EINTR { continue }
                break
            }
            for entry in fds where entry.revents != 0 {
                if entry.fd == inputFD {
                    let count = input.withUnsafeBytes { bytes -> Int in
                        guard let base = bytes.baseAddress else { return 0 }
                        return write(inputFD, base + written, input.count - written)
                    }
                    if count > 0 { written += count }
                    if written == input.count || (count < 0 && errno != EAGAIN && errno != EINTR) {
                        close(inputFD)
                        inputFD = -1
                    }
                } else {
                    let count = read(entry.fd, &buffer, buffer.count)
                    if count > 0 {
                        open[entry.fd]?.append(contentsOf: buffer[0..<count])
                    } else if count == 0 || (errno != EAGAIN && errno != EINTR) {
                        collected[entry.fd] = open.removeValue(forKey: entry.fd)
                        close(entry.fd)
                    }
                }
            }
        }
        if inputFD >= 0 { close(inputFD) }
        for (fd, bytes) in open { collected[fd] = bytes; close(fd) }
        return (collected[stdout] ?? [], collected[stderr] ?? [])
    }

    /// The exit status, or 128 + signal number for a killed child.
    private static func wait(_ pid: pid_t) -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let signal = status & 0x7f
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal
    }

    private static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw InitError.cannotRun("pipe", String(cString: strerror(errno))) }
        for fd in fds { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        return (fds[0], fds[1])
    }
}
