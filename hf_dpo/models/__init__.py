"""Models by name (Hub, folder, packaged copies), quantization, and small facts about a model."""
