// swift-tools-version:5.9
// The Swift package of Mkondo: the generated `Mkondo.swift` over the Rust
// library packed as an XCFramework. Both are produced on macOS by the steps in
// sdk-mobile/README.md ("iOS"): they land in Sources/Mkondo and
// MkondoFFI.xcframework next to this file.
import PackageDescription

let package = Package(
    name: "Mkondo",
    platforms: [.iOS(.v15), .macOS(.v12)],
    products: [
        .library(name: "Mkondo", targets: ["Mkondo"]),
    ],
    targets: [
        // The C header + static library (module `MkondoFFI`) for every Apple slice.
        .binaryTarget(name: "MkondoFFI", path: "MkondoFFI.xcframework"),
        // The generated Swift API (`import Mkondo`).
        .target(name: "Mkondo", dependencies: ["MkondoFFI"], path: "Sources/Mkondo"),
    ]
)
