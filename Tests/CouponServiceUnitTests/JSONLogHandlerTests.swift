@testable import CouponService
import CouponTestSupport
import Foundation
import Logging
import Synchronization
import Testing

@Suite struct JSONLogHandlerTests {
    @Test func eachEventIsOneParseableJSONLine() throws {
        let lines = Mutex<[String]>([])
        var handler = JSONLogHandler(label: "coupon-server") { line in lines.withLock { $0.append(line) } }
        handler.metadata["instance"] = "a"
        let logger = Logger(label: "coupon-server", factory: { _ in handler })
        logger.info(
            "quote \" backslash \\ newline \n bell \u{7} done",
            metadata: ["coupon_id": "42", "nested": ["list": ["x", "y"]]])

        let written = lines.withLock { $0 }
        #expect(written.count == 1)
        let line = try #require(written.first)
        #expect(line.hasSuffix("}\n") && line.dropLast().contains("\n") == false)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["level"] as? String == "info")
        #expect(object["label"] as? String == "coupon-server")
        #expect(object["message"] as? String == "quote \" backslash \\ newline \n bell \u{7} done")
        let metadata = try #require(object["metadata"] as? [String: Any])
        #expect(metadata["coupon_id"] as? String == "42" && metadata["instance"] as? String == "a")
        #expect((metadata["nested"] as? [String: Any])?["list"] as? [String] == ["x", "y"])
        let time = try #require(object["time"] as? String)
        #expect(time.hasSuffix("Z") && time.count == 24)
    }
}
