// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "coupon-service",
    platforms: [.macOS(.v14)],
    products: [
        .executable(name: "coupon-server", targets: ["CouponServer"]),
        .library(name: "CouponService", targets: ["CouponService"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/apple/swift-crypto.git", "3.12.3"..<"5.0.0"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.7.1"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
    ],
    targets: [
        .target(
            name: "CouponService",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
            ],
            plugins: ["EmbeddedMigrations"]
        ),
        // migrations/ built into the binary (`Migration.embeddedFiles`): the plugin and its tool.
        .executableTarget(name: "EmbedMigrations"),
        .plugin(name: "EmbeddedMigrations", capability: .buildTool(), dependencies: ["EmbedMigrations"]),
        .executableTarget(
            name: "CouponServer",
            dependencies: [
                "CouponService",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            ]
        ),
        // What both test targets share: the test application's settings, HTTP helpers, bounded waits.
        .target(
            name: "CouponTestSupport",
            dependencies: [
                "CouponService",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Crypto", package: "swift-crypto"),
                .product(name: "CryptoExtras", package: "swift-crypto"),
            ],
            path: "Tests/CouponTestSupport"
        ),
        // No database: `swift test --filter CouponServiceUnitTests`, seconds.
        .testTarget(
            name: "CouponServiceUnitTests",
            dependencies: [
                "CouponService", "CouponTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
        // Against the PostgreSQL that scripts/test.sh starts; each test audits database state.
        .testTarget(
            name: "CouponServiceIntegrationTests",
            dependencies: [
                "CouponService", "CouponTestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ]
        ),
    ]
)
