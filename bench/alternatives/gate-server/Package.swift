// swift-tools-version:6.0
// The Redis gate of the popular FCFS designs behind the same HTTP framework as the service, for
// bench/alternatives only (issue 34, item 5): not part of the service, built by the bench that runs it.
import PackageDescription

let package = Package(
    name: "redis-gate-server",
    platforms: [.macOS(.v14)],
    products: [.executable(name: "redis-gate-server", targets: ["RedisGateServer"])],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
    ],
    targets: [
        .executableTarget(
            name: "RedisGateServer",
            dependencies: [
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
            ]
        )
    ]
)
