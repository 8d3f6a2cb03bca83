import Foundation
import Hummingbird

/// The request context of every route: answers are JSON with a stable key order.
struct CouponRequestContext: RequestContext {
    var coreContext: CoreRequestContextStorage

    init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
    }

    var responseEncoder: JSONEncoder { .coupon }
}
