"""The background server: owns the engine so jobs outlive the app's terminal."""
