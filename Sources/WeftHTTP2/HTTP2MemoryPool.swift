import CNghttp2

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Recycles libnghttp2's own allocations for one session.
///
/// For every request nghttp2 allocates its stream, an item for each queued
/// frame, the array of a submitted header list, and buffers for decoded and
/// indexed header fields, and it frees them as the exchange ends: the same
/// sizes, request after request. A freed block of up to 4 KiB goes on the
/// list of its size class and is handed out again, instead of a trip
/// through malloc and free for each (about a dozen a proxied request).
///
/// - Bounded: a list keeps at most `keptBytesPerClass` of blocks; what is
///   freed beyond that goes back to the system. Larger blocks are never
///   kept. Everything kept is freed with the pool.
/// - Single-threaded, like the session it serves: one event loop.
/// - Must outlive the session: nghttp2 frees into it from
///   `nghttp2_session_del`.
///
/// Every block starts with a 16-byte header (alignment is kept): its size
/// class, or -1 for a block too large for any, and then the next block of
/// its list while it is kept, or a large block's size.
final class HTTP2MemoryPool {
    /// Classes hold 64, 128, ... 4096 bytes, header included.
    static let classCount = 7
    static let smallestClassShift = 6
    static let headerSize = 16
    static let largestClassSize = 1 << (smallestClassShift + classCount - 1)
    /// How much each class's list keeps, at most.
    static let keptBytesPerClass = 16 * 1024

    /// The lists' state in one allocation the C callbacks reach without
    /// reference counting: word `i` is class `i`'s first kept block,
    /// word `classCount + i` how many it keeps, then how many blocks came
    /// from malloc (for tests and profiles), then 1 when blocks are kept.
    private let words: UnsafeMutablePointer<Int>
    private static let wordCount = 2 * classCount + 2
    private static let keepsWord = 2 * classCount + 1

    /// What nghttp2 is given; valid as long as the pool.
    var allocator: nghttp2_mem {
        nghttp2_mem(mem_user_data: UnsafeMutableRawPointer(words), malloc: poolMalloc, free: poolFree,
                    calloc: poolCalloc, realloc: poolRealloc)
    }

    /// - Parameter keepsBlocks: false frees every block at once, so that
    ///   AddressSanitizer sees nghttp2's use of each (the fuzz harnesses).
    init(keepsBlocks: Bool = true) {
        words = .allocate(capacity: Self.wordCount)
        words.initialize(repeating: 0, count: Self.wordCount)
        words[Self.keepsWord] = keepsBlocks ? 1 : 0
    }

    deinit {
        for sizeClass in 0..<Self.classCount {
            var block = UnsafeMutableRawPointer(bitPattern: words[sizeClass])
            while let current = block {
                block = UnsafeMutableRawPointer(bitPattern: current.load(fromByteOffset: 8, as: Int.self))
                free(current)
            }
        }
        words.deallocate()
    }

    /// Blocks kept for reuse now, all classes.
    var keptBlocks: Int { (0..<Self.classCount).reduce(0) { $0 + words[Self.classCount + $1] } }
    /// Blocks that came from malloc since the pool was made.
    var systemAllocations: Int { words[2 * Self.classCount] }

    static func classSize(_ sizeClass: Int) -> Int { 1 << (smallestClassShift + sizeClass) }

    /// The smallest class whose blocks hold `total` bytes, header included
    /// (`total` at most `largestClassSize`).
    static func sizeClass(holding total: Int) -> Int {
        guard total > 1 << smallestClassShift else { return 0 }
        return Int.bitWidth - (total - 1).leadingZeroBitCount - smallestClassShift
    }

    // MARK: the operations, on the words

    static func allocate(_ size: Int, _ words: UnsafeMutablePointer<Int>) -> UnsafeMutableRawPointer? {
        // A size_t above Int.max arrives negative: no such block.
        let (total, overflow) = size.addingReportingOverflow(headerSize)
        guard size >= 0, !overflow else { return nil }
        if total <= largestClassSize {
            let sizeClass = sizeClass(holding: total)
            if let block = UnsafeMutableRawPointer(bitPattern: words[sizeClass]) {
                words[sizeClass] = block.load(fromByteOffset: 8, as: Int.self)
                words[classCount + sizeClass] -= 1
                return block + headerSize
            }
            guard let block = malloc(classSize(sizeClass)) else { return nil }
            words[2 * classCount] += 1
            block.storeBytes(of: sizeClass, as: Int.self)
            return block + headerSize
        }
        guard let block = malloc(total) else { return nil }
        words[2 * classCount] += 1
        block.storeBytes(of: -1, as: Int.self)
        block.storeBytes(of: size, toByteOffset: 8, as: Int.self)
        return block + headerSize
    }

    static func release(_ pointer: UnsafeMutableRawPointer?, _ words: UnsafeMutablePointer<Int>) {
        guard let pointer else { return }
        let block = pointer - headerSize
        let sizeClass = block.load(as: Int.self)
        guard sizeClass >= 0, sizeClass < classCount, words[keepsWord] != 0,
              words[classCount + sizeClass] < keptBytesPerClass / classSize(sizeClass) else {
            free(block)
            return
        }
        block.storeBytes(of: words[sizeClass], toByteOffset: 8, as: Int.self)
        words[sizeClass] = Int(bitPattern: block)
        words[classCount + sizeClass] += 1
    }

    static func resize(_ pointer: UnsafeMutableRawPointer?, to size: Int,
                       _ words: UnsafeMutablePointer<Int>) -> UnsafeMutableRawPointer? {
        // A size_t above Int.max arrives negative: no such block (the old
        // one stays as it was, as realloc leaves it on failure).
        guard size >= 0 else { return nil }
        guard let pointer else { return allocate(size, words) }
        let block = pointer - headerSize
        let sizeClass = block.load(as: Int.self)
        guard sizeClass < classCount else { return nil }
        let capacity = sizeClass >= 0 ? classSize(sizeClass) - headerSize
                                      : block.load(fromByteOffset: 8, as: Int.self)
        if size <= capacity { return pointer }
        guard let moved = allocate(size, words) else { return nil }
        moved.copyMemory(from: pointer, byteCount: capacity)
        release(pointer, words)
        return moved
    }

    static func allocateZeroed(_ count: Int, _ size: Int,
                               _ words: UnsafeMutablePointer<Int>) -> UnsafeMutableRawPointer? {
        let (total, overflow) = count.multipliedReportingOverflow(by: size)
        guard count >= 0, size >= 0, !overflow, let pointer = allocate(total, words) else { return nil }
        pointer.initializeMemory(as: UInt8.self, repeating: 0, count: total)
        return pointer
    }
}

// nghttp2's allocator callbacks. `userData` is the pool's words; never nil
// (the pool sets it), but a nil is an allocation failure, not a crash.

private func poolMalloc(_ size: Int, _ userData: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let words = userData?.assumingMemoryBound(to: Int.self) else { return nil }
    return HTTP2MemoryPool.allocate(size, words)
}

private func poolFree(_ pointer: UnsafeMutableRawPointer?, _ userData: UnsafeMutableRawPointer?) {
    guard let words = userData?.assumingMemoryBound(to: Int.self) else { return }
    HTTP2MemoryPool.release(pointer, words)
}

private func poolCalloc(_ count: Int, _ size: Int, _ userData: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let words = userData?.assumingMemoryBound(to: Int.self) else { return nil }
    return HTTP2MemoryPool.allocateZeroed(count, size, words)
}

private func poolRealloc(_ pointer: UnsafeMutableRawPointer?, _ size: Int,
                         _ userData: UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? {
    guard let words = userData?.assumingMemoryBound(to: Int.self) else { return nil }
    return HTTP2MemoryPool.resize(pointer, to: size, words)
}
