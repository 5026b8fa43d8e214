"""The live steering studio: callbacks (:mod:`tada.studio.session`) and the Gradio app (:mod:`tada.studio.app`)."""
