/// Values by HTTP/2 stream id, looked up without hashing.
///
/// A connection's streams are opened by one side with ids that go up by 2,
/// so the streams open at once have ids close together: each id's slot is
/// its half, modulo the table's size, and consecutive streams take
/// consecutive slots. The table doubles (up to `maxSlots`) when a new id
/// finds its slot held by an older stream still open; past that size, such
/// ids live in a dictionary beside the slots. An id is in one place only.
/// Id 0, which marks an empty slot (and is never a stream's), lives in the
/// dictionary too.
///
/// Inlinable, so that each module using it gets code specialized for its
/// values (unspecialized generic code looks metadata up on every call).
@frozen
public struct StreamSlots<Value> {
    @usableFromInline struct Slot {
        /// 0 marks an empty slot (0 is never a stream's id).
        @usableFromInline var id: Int32
        @usableFromInline var value: Value?

        @inlinable init(id: Int32, value: Value?) {
            self.id = id
            self.value = value
        }
    }

    @usableFromInline var slots: [Slot]
    @usableFromInline var overflow: [Int32: Value] = [:]
    @usableFromInline var stored = 0

    /// `slots`: a power of two, the table's starting size.
    @inlinable public init(slots: Int = 8) {
        self.slots = Array(repeating: Slot(id: 0, value: nil), count: slots)
    }

    @inlinable public static var maxSlots: Int { 1024 }
    /// Streams held.
    @inlinable public var count: Int { stored }
    @inlinable public var isEmpty: Bool { stored == 0 }

    @inlinable func slot(of id: Int32) -> Int { Int(id >> 1) & (slots.count - 1) }

    @inlinable public subscript(id: Int32) -> Value? {
        get {
            let slot = slot(of: id)
            if id != 0, slots[slot].id == id { return slots[slot].value }
            return overflow.isEmpty ? nil : overflow[id]
        }
        set {
            if let newValue { insert(newValue, for: id) } else { removeValue(forKey: id) }
        }
    }

    @inlinable mutating func insert(_ value: Value, for id: Int32) {
        let slot = slot(of: id)
        if id != 0, slots[slot].id == id {
            slots[slot].value = value
        } else if !overflow.isEmpty, overflow[id] != nil {
            overflow[id] = value
        } else if id != 0, slots[slot].id == 0 {
            slots[slot] = Slot(id: id, value: value)
            stored += 1
        } else if id != 0, slots.count < Self.maxSlots {
            grow()
            insert(value, for: id)
        } else {
            overflow[id] = value
            stored += 1
        }
    }

    @inlinable @discardableResult
    public mutating func removeValue(forKey id: Int32) -> Value? {
        let slot = slot(of: id)
        if id != 0, slots[slot].id == id {
            let value = slots[slot].value
            slots[slot] = Slot(id: 0, value: nil)
            stored -= 1
            return value
        }
        guard !overflow.isEmpty, let value = overflow.removeValue(forKey: id) else { return nil }
        stored -= 1
        return value
    }

    /// Empties the table, handing back what it held.
    @inlinable public mutating func removeAll() -> [Value] {
        var all: [Value] = []
        all.reserveCapacity(stored)
        for slot in slots where slot.id != 0 {
            if let value = slot.value { all.append(value) }
        }
        all.append(contentsOf: overflow.values)
        self = StreamSlots(slots: slots.count)
        return all
    }

    /// Twice the slots; the entries are placed again (the overflow too, as
    /// far as the new slots take it).
    @inlinable mutating func grow() {
        var bigger = StreamSlots(slots: slots.count * 2)
        for slot in slots where slot.id != 0 {
            if let value = slot.value { bigger.place(value, for: slot.id) }
        }
        for (id, value) in overflow { bigger.place(value, for: id) }
        self = bigger
    }

    /// Into its slot if free, else the overflow; never grows.
    @inlinable mutating func place(_ value: Value, for id: Int32) {
        let slot = slot(of: id)
        if slots[slot].id == 0 {
            slots[slot] = Slot(id: id, value: value)
        } else {
            overflow[id] = value
        }
        stored += 1
    }
}
