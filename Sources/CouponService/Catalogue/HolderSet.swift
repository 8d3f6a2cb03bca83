/// The holders of a final coupon in 8 bytes each: the sorted 64-bit hashes of their user ids.
///
/// A miss is certain: that user holds no ticket, and the refusal is answered from memory. A hit is
/// only likely (a holder, or a rare collision) and is confirmed by reading that user's ticket. The
/// hashes use Swift's per-process random seed, so nobody can choose user ids that collide on purpose.
struct HolderSet: Sendable, Equatable {
    private let hashes: [UInt64]

    init(hashes unsorted: [UInt64]) {
        hashes = unsorted.sorted()
    }

    static func hash(_ userID: String) -> UInt64 {
        UInt64(bitPattern: Int64(userID.hashValue))
    }

    var count: Int { hashes.count }

    func mayContain(_ userID: String) -> Bool {
        let wanted = Self.hash(userID)
        var low = 0
        var high = hashes.count
        while low < high {
            let middle = (low + high) / 2
            if hashes[middle] < wanted { low = middle + 1 } else { high = middle }
        }
        return low < hashes.count && hashes[low] == wanted
    }
}
