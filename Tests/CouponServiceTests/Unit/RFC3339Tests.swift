@testable import CouponService
import Foundation
import Testing

@Suite struct RFC3339Tests {
    @Test(arguments: [0.0, 1_795_737_600.5, 1_795_737_600.999, 1_700_000_000.0001, -1.25, 4_102_444_799.123, 951_782_400.042])
    func matchesFoundation(_ seconds: Double) {
        let date = Date(timeIntervalSince1970: seconds)
        let millisecond = Date(timeIntervalSince1970: (seconds * 1000).rounded(.down) / 1000)
        #expect(RFC3339.string(date) == millisecond.formatted(Date.ISO8601FormatStyle(includingFractionalSeconds: true)))
    }

    @Test func looksLikeTheAPIPromises() {
        #expect(RFC3339.string(Date(timeIntervalSince1970: 1_795_737_600.349)) == "2026-11-27T00:00:00.349Z")
    }
}
