import Foundation
import Hummingbird

/// The request context of every route: answers are JSON with a stable key order.
public struct CouponRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    public var responseEncoder: JSONEncoder { .coupon }
}

extension JSONEncoder {
    /// Sorted keys so that the same answer is the same bytes; no escaped slashes in media types.
    static let coupon: JSONEncoder = {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return encoder
    }()
}
