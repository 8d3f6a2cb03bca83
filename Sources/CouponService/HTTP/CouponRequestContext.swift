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
