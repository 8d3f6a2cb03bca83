import Foundation

extension JSONEncoder {
    /// Sorted keys so that the same answer is the same bytes; no escaped slashes in media types.
    static let coupon: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
