"""copart_tf: Unsupervised Co-part Segmentation through Assembly (ICML 2021) in TensorFlow/Keras.

Importing the package changes nothing in the process' environment: the command-line programs set
TensorFlow's environment themselves (`copart_tf.cli_env`).
"""

__version__ = "0.1.0"
