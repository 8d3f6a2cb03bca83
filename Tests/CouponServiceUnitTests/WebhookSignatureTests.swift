@testable import CouponService
import Foundation
import NIOCore
import Testing

/// The delivery's signature and backoff, as docs/events.md tells a consumer to check them.
@Suite struct WebhookSignatureTests {
    /// The vector from Python's `hmac.new(b"whsec_test", b'1765100000.{"events":[]}', hashlib.sha256)`.
    @Test func theSignatureIsHMACSHA256OfTimestampDotBody() {
        let signature = WebhookDelivery.signature(
            of: ByteBuffer(string: #"{"events":[]}"#), secret: "whsec_test", at: Date(timeIntervalSince1970: 1_765_100_000.7))
        #expect(signature == "t=1765100000,v1=88104b9879e712aa5263e8dbd40d65f31de6ef5b79876a91b993c4d28ee673aa")
    }

    @Test func backoffStartsAtASecondDoublesAndStopsAtFiveMinutes() {
        for attempts in 1...30 {
            let full = min(300.0, pow(2.0, Double(attempts - 1)))
            let backoff = WebhookDelivery.backoff(afterAttempts: attempts).seconds
            #expect(backoff >= full * 0.5 - 0.001 && backoff <= full + 0.001, "attempt \(attempts): \(backoff) s")
        }
    }

    @Test func aSecretIsThirtyTwoRandomBytes() {
        let secrets = Set((0..<100).map { _ in WebhookStore.newSecret() })
        #expect(secrets.count == 100)
        #expect(secrets.allSatisfy { $0.wholeMatch(of: /whsec_[0-9a-f]{64}/) != nil })
    }
}
