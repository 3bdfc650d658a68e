// The Android library module of Mkondo. Build the native libraries and the
// Kotlin bindings first (sdk-mobile/README.md, "Android"), then `./gradlew :mkondo:assembleRelease`.
pluginManagement {
    repositories { google(); mavenCentral(); gradlePluginPortal() }
}
dependencyResolutionManagement {
    repositories { google(); mavenCentral() }
}
rootProject.name = "mkondo-android"
include(":mkondo")
