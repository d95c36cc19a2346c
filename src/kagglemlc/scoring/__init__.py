"""scoring: metrics, threshold searches and blend math on numpy arrays (numpy, scikit-learn, scipy): no files, no
pandas, no torch.
"""
