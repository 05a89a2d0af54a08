"""Speech in and out: recognizers and WAV input (``speech``), microphone capture (``mic``),
text-to-speech (``tts``) and the ``voice pull`` command (``cli``). Never imports tkinter."""
