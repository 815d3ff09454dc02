#if canImport(Glibc)
import Glibc
#endif
import Atomics
import Foundation
import NIOCore
import NIOPosix

/// The access log (SPEC §6, `access_log`): one line per HTTP request or TCP
/// session, from its `RequestRecord`, as text or JSON, to a file or stdout.
///
/// Off the critical path: an event loop formats the line into a buffer of
/// its own (no lock, no line-sized allocation), and hands a whole batch
/// (16 KiB, or what 100 ms gathered) to one writer thread. Batches wait for
/// the writer in a queue bounded to 1 MiB; a batch that does not fit is
/// dropped and its lines counted, so a slow disk or a stuck stdout never
/// holds up traffic.
public final class AccessLog: Sendable {
    public enum Format: String, Sendable {
        case text, json
    }

    let format: Format
    private let output: FileHandle
    private let buffers: [ObjectIdentifier: NIOLoopBound<LoopBatch>]
    private let writer: NIOThreadPool
    private let queuedBytes = ManagedAtomic<Int>(0)
    private let written = ManagedAtomic<Int>(0)
    private let dropped = ManagedAtomic<Int>(0)

    static let batchBytes = 16 * 1024
    static let flushDelay = TimeAmount.milliseconds(100)
    static let queueLimit = 1024 * 1024

    /// Lines written, and lines dropped because the writer fell behind.
    public var writtenLines: Int { written.load(ordering: .relaxed) }
    public var droppedLines: Int { dropped.load(ordering: .relaxed) }

    /// One batch per event loop of `group` (call off those loops); `path` is a file (appended to,
    /// created 0644 if missing) or `stdout`. Throws when the file cannot be
    /// opened for writing.
    public init(format: Format, path: String, group: EventLoopGroup) throws {
        self.format = format
        if path == "stdout" {
            output = FileHandle.standardOutput
        } else {
            let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
            guard fd >= 0 else { throw AccessLogError(path: path, reason: String(cString: strerror(errno))) }
            output = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
        }
        var buffers: [ObjectIdentifier: NIOLoopBound<LoopBatch>] = [:]
        for loop in group.makeIterator() {
            buffers[ObjectIdentifier(loop)] = try loop.submit { NIOLoopBound(LoopBatch(), eventLoop: loop) }.wait()
        }
        self.buffers = buffers
        writer = NIOThreadPool(numberOfThreads: 1)
        writer.start()
    }

    /// Logs a finished request or session; called on the event loop that
    /// carried it (elsewhere the line is dropped and counted).
    public func log(_ record: RequestRecord, duration: TimeAmount) {
        guard let loop = MultiThreadedEventLoopGroup.currentEventLoop,
              let bound = buffers[ObjectIdentifier(loop)] else {
            dropped.wrappingIncrement(ordering: .relaxed)
            return
        }
        let batch = bound.value
        AccessLogLine.write(record, as: format, at: Date().timeIntervalSince1970,
                            duration: duration, into: &batch.buffer)
        batch.lines += 1
        if batch.buffer.readableBytes >= Self.batchBytes {
            hand(batch)
        } else if !batch.flushScheduled {
            batch.flushScheduled = true
            loop.assumeIsolated().scheduleTask(in: Self.flushDelay) { [self] in
                batch.flushScheduled = false
                hand(batch)
            }
        }
    }

    /// Gives the loop's batch to the writer, or drops it when the queue is full.
    private func hand(_ batch: LoopBatch) {
        guard batch.lines > 0 else { return }
        let bytes = batch.buffer
        let lines = batch.lines
        batch.buffer = ByteBuffer()
        batch.buffer.reserveCapacity(Self.batchBytes + 1024)
        batch.lines = 0
        let size = bytes.readableBytes
        guard queuedBytes.wrappingIncrementThenLoad(by: size, ordering: .relaxed) <= Self.queueLimit else {
            queuedBytes.wrappingDecrement(by: size, ordering: .relaxed)
            dropped.wrappingIncrement(by: lines, ordering: .relaxed)
            return
        }
        let (output, queuedBytes, written) = (self.output, self.queuedBytes, self.written)
        writer.submit { _ in
            // A failed write (a closed pipe, a full disk) loses this batch only.
            _ = bytes.withUnsafeReadableBytes { try? output.write(contentsOf: Data($0)) }
            queuedBytes.wrappingDecrement(by: size, ordering: .relaxed)
            written.wrappingIncrement(by: lines, ordering: .relaxed)
        }
    }

    /// Hands every loop's batch to the writer and waits (bounded) until the
    /// writer has written what it was given: lines are not lost at exit.
    public func flush(timeout: TimeAmount = .seconds(2)) {
        for bound in buffers.values {
            _ = try? bound.eventLoop.submit { [self] in hand(bound.value) }.wait()
        }
        let deadline = NIODeadline.now() + timeout
        while queuedBytes.load(ordering: .relaxed) > 0 && NIODeadline.now() < deadline {
            usleep(5_000)
        }
    }

    /// Flushes, then stops the writer, unless it is stuck in a write (a
    /// pipe nobody reads): exiting must not wait on it.
    public func close() {
        flush()
        if queuedBytes.load(ordering: .relaxed) == 0 { try? writer.syncShutdownGracefully() }
    }
}

/// An access log file that cannot be opened.
public struct AccessLogError: Error, CustomStringConvertible {
    public let path: String
    public let reason: String
    public var description: String { "cannot open access log \(path): \(reason)" }
}

/// One loop's lines not yet handed to the writer.
final class LoopBatch {
    var buffer = ByteBuffer()
    var lines = 0
    var flushScheduled = false
}

/// How a record reads as a line (docs/observability.md has both formats).
enum AccessLogLine {
    static func write(_ record: RequestRecord, as format: AccessLog.Format, at time: Double,
                      duration: TimeAmount, into buffer: inout ByteBuffer) {
        switch format {
        case .text: text(record, time: time, duration: duration, into: &buffer)
        case .json: json(record, time: time, duration: duration, into: &buffer)
        }
    }

    /// `2026-11-30T09:40:01.123Z outbound backend 198.18.0.3:9390 "GET backend:9390 /items" 200 - 0 1024 1.234 1 <request id> <trace id> -`
    static func text(_ record: RequestRecord, time: Double, duration: TimeAmount, into buffer: inout ByteBuffer) {
        writeTimestamp(time, into: &buffer)
        buffer.writeStaticString(" ")
        buffer.writeString(record.direction.rawValue)
        buffer.writeStaticString(" ")
        writeBare(record.cluster, into: &buffer)
        buffer.writeStaticString(" ")
        if let endpoint = record.endpoint { buffer.writeString("\(endpoint)") } else { buffer.writeStaticString("-") }
        buffer.writeStaticString(" \"")
        if record.isSession {
            buffer.writeStaticString("TCP - -")
        } else {
            writeQuotedContent(record.method ?? "-", into: &buffer)
            buffer.writeStaticString(" ")
            writeQuotedContent(record.authority ?? "-", into: &buffer)
            buffer.writeStaticString(" ")
            writeQuotedContent(record.path ?? "-", into: &buffer)
        }
        buffer.writeStaticString("\" ")
        buffer.writeString(record.isSession ? "-" : String(record.status))
        buffer.writeStaticString(" ")
        writeBare(record.reason?.rawValue, into: &buffer)
        buffer.writeStaticString(" ")
        buffer.writeString(String(record.bytesIn))
        buffer.writeStaticString(" ")
        buffer.writeString(String(record.bytesOut))
        buffer.writeStaticString(" ")
        writeMilliseconds(duration, into: &buffer)
        buffer.writeStaticString(" ")
        buffer.writeString(String(record.attempts))
        buffer.writeStaticString(" ")
        writeBare(record.requestID, into: &buffer)
        buffer.writeStaticString(" ")
        writeBare(record.traceID.map(String.init), into: &buffer)
        buffer.writeStaticString(" ")
        writeBare(record.peerIdentity.map(String.init(describing:)), into: &buffer)
        buffer.writeStaticString("\n")
    }

    static func json(_ record: RequestRecord, time: Double, duration: TimeAmount, into buffer: inout ByteBuffer) {
        buffer.writeStaticString("{\"time\":\"")
        writeTimestamp(time, into: &buffer)
        buffer.writeStaticString("\",\"protocol\":\"")
        buffer.writeStaticString(record.isSession ? "tcp" : "http")
        buffer.writeStaticString("\",\"direction\":\"")
        buffer.writeString(record.direction.rawValue)
        buffer.writeStaticString("\",\"cluster\":")
        writeJSON(record.cluster, into: &buffer)
        buffer.writeStaticString(",\"endpoint\":")
        writeJSON(record.endpoint.map { "\($0)" }, into: &buffer)
        buffer.writeStaticString(",\"method\":")
        writeJSON(record.method, into: &buffer)
        buffer.writeStaticString(",\"authority\":")
        writeJSON(record.authority, into: &buffer)
        buffer.writeStaticString(",\"path\":")
        writeJSON(record.path, into: &buffer)
        buffer.writeStaticString(",\"status\":")
        if record.isSession { buffer.writeStaticString("null") } else { buffer.writeString(String(record.status)) }
        buffer.writeStaticString(",\"reason\":")
        writeJSON(record.reason?.rawValue, into: &buffer)
        buffer.writeStaticString(",\"bytes_in\":")
        buffer.writeString(String(record.bytesIn))
        buffer.writeStaticString(",\"bytes_out\":")
        buffer.writeString(String(record.bytesOut))
        buffer.writeStaticString(",\"duration_ms\":")
        writeMilliseconds(duration, into: &buffer)
        buffer.writeStaticString(",\"attempts\":")
        buffer.writeString(String(record.attempts))
        buffer.writeStaticString(",\"request_id\":")
        writeJSON(record.requestID, into: &buffer)
        buffer.writeStaticString(",\"trace_id\":")
        writeJSON(record.traceID.map(String.init), into: &buffer)
        buffer.writeStaticString(",\"traceparent\":")
        writeJSON(record.traceparent, into: &buffer)
        buffer.writeStaticString(",\"peer_identity\":")
        writeJSON(record.peerIdentity.map(String.init(describing:)), into: &buffer)
        buffer.writeStaticString("}\n")
    }

    // MARK: pieces

    /// A value from configuration or weft itself (no spaces), or `-`.
    private static func writeBare(_ text: String?, into buffer: inout ByteBuffer) {
        guard let text, !text.isEmpty else {
            buffer.writeStaticString("-")
            return
        }
        writeQuotedContent(text, into: &buffer)
    }

    /// Request data inside the text line's quotes: a quote, a backslash, a
    /// space-less control byte or a byte ≥ 0x7f is escaped as `\xNN`, so a
    /// request can neither break the line nor forge fields.
    private static func writeQuotedContent(_ text: String, into buffer: inout ByteBuffer) {
        var text = text
        text.withUTF8 { bytes in
            if !bytes.contains(where: needsEscape) { buffer.writeBytes(bytes); return }
            for byte in bytes {
                if needsEscape(byte) {
                    buffer.writeStaticString("\\x")
                    writeHex(byte, into: &buffer)
                } else {
                    buffer.writeInteger(byte)
                }
            }
        }
    }

    private static func needsEscape(_ byte: UInt8) -> Bool {
        byte < 0x21 || byte >= 0x7f || byte == UInt8(ascii: "\"") || byte == UInt8(ascii: "\\")
    }

    /// A JSON string (escaped per RFC 8259; non-ASCII passes as UTF-8), or null.
    private static func writeJSON(_ text: String?, into buffer: inout ByteBuffer) {
        guard var text else {
            buffer.writeStaticString("null")
            return
        }
        buffer.writeStaticString("\"")
        text.withUTF8 { bytes in
            for byte in bytes {
                switch byte {
                case UInt8(ascii: "\""): buffer.writeStaticString("\\\"")
                case UInt8(ascii: "\\"): buffer.writeStaticString("\\\\")
                case 0x0a: buffer.writeStaticString("\\n")
                case 0x0d: buffer.writeStaticString("\\r")
                case 0x09: buffer.writeStaticString("\\t")
                case ..<0x20, 0x7f:
                    buffer.writeStaticString("\\u00")
                    writeHex(byte, into: &buffer)
                default: buffer.writeInteger(byte)
                }
            }
        }
        buffer.writeStaticString("\"")
    }

    /// A byte as two lowercase hex digits.
    private static func writeHex(_ byte: UInt8, into buffer: inout ByteBuffer) {
        func digit(_ value: UInt8) -> UInt8 { value < 10 ? UInt8(ascii: "0") + value : UInt8(ascii: "a") + value - 10 }
        buffer.writeInteger(digit(byte >> 4))
        buffer.writeInteger(digit(byte & 0xf))
    }

    /// Milliseconds with three decimals: `1.234`.
    private static func writeMilliseconds(_ duration: TimeAmount, into buffer: inout ByteBuffer) {
        let micros = max(0, duration.nanoseconds / 1000)
        buffer.writeString(String(micros / 1000))
        buffer.writeStaticString(".")
        let fraction = micros % 1000
        if fraction < 100 { buffer.writeStaticString(fraction < 10 ? "00" : "0") }
        buffer.writeString(String(fraction))
    }

    /// RFC 3339 UTC with milliseconds: `2026-11-30T09:40:01.123Z`.
    static func writeTimestamp(_ time: Double, into buffer: inout ByteBuffer) {
        let millis = Int64((time * 1000).rounded(.down))
        let seconds = millis / 1000
        let days = seconds / 86_400
        let secondOfDay = Int(seconds % 86_400)
        // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
        let z = days + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let dayOfEra = z - era * 146_097
        let yearOfEra = (dayOfEra - dayOfEra / 1460 + dayOfEra / 36_524 - dayOfEra / 146_096) / 365
        let dayOfYear = dayOfEra - (365 * yearOfEra + yearOfEra / 4 - yearOfEra / 100)
        let monthIndex = (5 * dayOfYear + 2) / 153
        let day = Int(dayOfYear - (153 * monthIndex + 2) / 5 + 1)
        let month = Int(monthIndex < 10 ? monthIndex + 3 : monthIndex - 9)
        let year = Int(yearOfEra + era * 400 + (month <= 2 ? 1 : 0))
        func two(_ value: Int) {
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(value / 10))
            buffer.writeInteger(UInt8(ascii: "0") + UInt8(value % 10))
        }
        buffer.writeString(String(year))
        buffer.writeStaticString("-")
        two(month)
        buffer.writeStaticString("-")
        two(day)
        buffer.writeStaticString("T")
        two(secondOfDay / 3600)
        buffer.writeStaticString(":")
        two(secondOfDay / 60 % 60)
        buffer.writeStaticString(":")
        two(secondOfDay % 60)
        buffer.writeStaticString(".")
        let milli = Int(millis % 1000)
        buffer.writeInteger(UInt8(ascii: "0") + UInt8(milli / 100))
        two(milli % 100)
        buffer.writeStaticString("Z")
    }
}
