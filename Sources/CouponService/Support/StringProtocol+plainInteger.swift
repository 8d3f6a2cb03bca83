extension StringProtocol {
    /// The value of 1 to `maxDigits` ASCII digits and nothing else (no sign, no spaces), when it fits
    /// in 64 bits: how ids, limits and cursors are read from paths and queries.
    func plainInteger(maxDigits: Int = .max) -> Int64? {
        guard (1...maxDigits).contains(utf8.count), utf8.allSatisfy({ (UInt8(ascii: "0")...UInt8(ascii: "9")).contains($0) })
        else { return nil }
        return Int64(self)
    }
}
